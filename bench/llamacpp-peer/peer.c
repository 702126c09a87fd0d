// llama.cpp's side of bench/decode-peer.sh: prefill and decode tokens/s of one GGUF file through llama.cpp's own C
// library (the prebuilt CPU build from npm, @node-llama-cpp/linux-x64), printed as a row of `bench generation`'s table.
// It runs as llama-bench does: ONE persistent ggml thread pool attached to the context for the whole run (not
// node-llama-cpp's decode loop, whose threads are re-created and busy-wait), random prompt tokens, the prompt in one
// batch, then one token per llama_decode. Each decode step also reads the last logits and takes their argmax, as
// SharpTune's greedy decode does. With a batch above 1, that many sequences (each its own seq_id, prompts of the same
// length) are prefilled in one llama_decode and then advance one token each per llama_decode, as llama-server's
// parallel slots do: the batched decode that `bench generation` with the same batch measures on our side.
// Usage: peer FILE.gguf NAME DTYPE [threads 2] [prompt 128] [new 64] [repetitions 3] [batch 1]
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"

typedef struct ggml_threadpool *(*threadpool_new_fn)(struct ggml_threadpool_params *);
typedef void (*threadpool_free_fn)(struct ggml_threadpool *);

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
    return best;
}

static void fail(const char *what) {
    fprintf(stderr, "peer: %s\n", what);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 4) fail("usage: peer FILE.gguf NAME DTYPE [threads] [prompt] [new] [repetitions]");
    const char *path = argv[1], *name = argv[2], *dtype = argv[3];
    const int threads = argc > 4 ? atoi(argv[4]) : 2;
    const int n_prompt = argc > 5 ? atoi(argv[5]) : 128;
    const int n_new = argc > 6 ? atoi(argv[6]) : 64;
    const int repetitions = argc > 7 ? atoi(argv[7]) : 3;
    const int n_seq = argc > 8 ? atoi(argv[8]) : 1;
    if (n_seq < 1) fail("the batch must be at least 1");

    llama_log_set(quiet_log, NULL);
    // The npm build loads its CPU backend as a module (one per instruction set): load them from the package folder.
    const char *backends = getenv("PEER_BACKEND_DIR");
    if (backends) ggml_backend_load_all_from_path(backends); else ggml_backend_load_all();
    llama_backend_init();

    struct llama_model_params model_params = llama_model_default_params();
    model_params.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(path, model_params);
    if (!model) fail("could not load the model");
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    struct llama_context_params context_params = llama_context_default_params();
    context_params.n_ctx = n_seq * (n_prompt + n_new + 16);
    context_params.n_batch = n_seq * n_prompt;
    context_params.n_ubatch = n_seq * n_prompt;
    context_params.n_seq_max = n_seq;
    // llama-server's parallel slots share one KV buffer (its default when it picks the slot count itself);
    // PEER_KV_UNIFIED=0 gives each sequence its own, llama.cpp's library default.
    const char *unified = getenv("PEER_KV_UNIFIED");
    context_params.kv_unified = n_seq > 1 && !(unified && strcmp(unified, "0") == 0);
    context_params.n_threads = threads;
    context_params.n_threads_batch = threads;
    context_params.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, context_params);
    if (!ctx) fail("could not create a context");

    // One persistent pool, as llama-bench builds it (found through the CPU backend's registry: the backend may be a
    // dynamically loaded module).
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) fail("no CPU backend");
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    threadpool_new_fn pool_new = (threadpool_new_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
    threadpool_free_fn pool_free = (threadpool_free_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");
    if (!pool_new || !pool_free) fail("the CPU backend exports no thread pool functions");
    struct ggml_threadpool_params pool_params = ggml_threadpool_params_default(threads);
    pool_params.poll = 50;   // llama-bench's default polling level
    struct ggml_threadpool *pool = pool_new(&pool_params);
    if (!pool) fail("could not create the thread pool");
    llama_attach_threadpool(ctx, pool, NULL);

    double prefill_seconds = 0, decode_seconds = 0;
    if (n_seq > 1) {
        // Every sequence's prompt in one batch, then one token per sequence per step, each sequence's logits read back.
        struct llama_batch batch = llama_batch_init(n_seq * n_prompt, 0, 1);
        llama_token *tokens = malloc(sizeof(llama_token) * n_seq);
        srand(1);
        for (int run = -1; run < repetitions; run++) {   // run -1 warms up and is not counted
            llama_memory_clear(llama_get_memory(ctx), true);
            batch.n_tokens = 0;
            for (int s = 0; s < n_seq; s++)
                for (int i = 0; i < n_prompt; i++) {
                    int k = batch.n_tokens++;
                    batch.token[k] = 3 + rand() % (n_vocab - 3);
                    batch.pos[k] = i;
                    batch.n_seq_id[k] = 1;
                    batch.seq_id[k][0] = s;
                    batch.logits[k] = i == n_prompt - 1;
                }
            double start = now_seconds();
            if (llama_decode(ctx, batch) != 0) fail("prefill failed");
            for (int s = 0; s < n_seq; s++) tokens[s] = argmax(llama_get_logits_ith(ctx, (s + 1) * n_prompt - 1), n_vocab);
            llama_synchronize(ctx);
            double prefilled = now_seconds();
            for (int i = 0; i < n_new; i++) {
                batch.n_tokens = n_seq;
                for (int s = 0; s < n_seq; s++) {
                    batch.token[s] = tokens[s];
                    batch.pos[s] = n_prompt + i;
                    batch.n_seq_id[s] = 1;
                    batch.seq_id[s][0] = s;
                    batch.logits[s] = 1;
                }
                if (llama_decode(ctx, batch) != 0) fail("decode failed");
                for (int s = 0; s < n_seq; s++) tokens[s] = argmax(llama_get_logits_ith(ctx, s), n_vocab);
            }
            llama_synchronize(ctx);
            double done = now_seconds();
            if (run >= 0) {
                prefill_seconds += prefilled - start;
                decode_seconds += done - prefilled;
            }
        }
        free(tokens);
        llama_batch_free(batch);
    } else {
        llama_token *prompt = malloc(sizeof(llama_token) * n_prompt);
        srand(1);
        for (int run = -1; run < repetitions; run++) {   // run -1 warms up and is not counted
            llama_memory_clear(llama_get_memory(ctx), true);
            for (int i = 0; i < n_prompt; i++) prompt[i] = 3 + rand() % (n_vocab - 3);
            double start = now_seconds();
            if (llama_decode(ctx, llama_batch_get_one(prompt, n_prompt)) != 0) fail("prefill failed");
            llama_token token = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
            llama_synchronize(ctx);
            double prefilled = now_seconds();
            for (int i = 0; i < n_new; i++) {
                if (llama_decode(ctx, llama_batch_get_one(&token, 1)) != 0) fail("decode failed");
                token = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
            }
            llama_synchronize(ctx);
            double done = now_seconds();
            if (run >= 0) {
                prefill_seconds += prefilled - start;
                decode_seconds += done - prefilled;
            }
        }
        free(prompt);
    }
    prefill_seconds /= repetitions;
    decode_seconds /= repetitions;

    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("| %s | %s | %d | %.0f | %.0f | %.2f | %.2f |\n", name, dtype, n_seq, (double)n_seq * n_prompt / prefill_seconds,
           (double)n_seq * n_new / decode_seconds, decode_seconds / n_new * 1000, usage.ru_maxrss / 1048576.0);

    llama_free(ctx);
    pool_free(pool);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
