namespace SharpTune.Models;

// Phi-1 / Phi-1.5 / Phi-2: field names and defaults follow PhiConfig (huggingface/transformers:
// models/phi/configuration_phi.py; its defaults are Phi-1's), since config.json files may omit what the config class
// supplies.
public sealed partial record ModelConfig
{
    // Heads are hidden_size / num_attention_heads wide (PhiAttention has no head_dim field). The rotated share is
    // partial_rotary_factor (default 0.5); transformers 5 keeps it, and rope_theta, in rope_parameters, whose values win
    // over the top-level ones, as for GPT-NeoX.
    // Phi-1 and Phi-1.5 first shipped as remote code: MixFormerSequentialForCausalLM (model_type mixformer-sequential),
    // a flat layers.N list with layers.N.mixer.Wqkv, layers.N.mlp.fc1… and an embedding and head among the layers. The
    // Hub repositories (microsoft/phi-1, phi-1_5, phi-2) were converted to transformers' PhiForCausalLM since.
    private static ModelConfig RefuseMixFormer(ConfigReader r, string modelType) =>
        throw new NotSupportedException(
            $"{r.Source}: architectures MixFormerSequentialForCausalLM (model_type '{modelType}') is the old remote-code Phi-1/Phi-1.5 " +
            "format (layers.N.mixer.Wqkv, loaded with trust_remote_code), which SharpTune does not read; use the checkpoint converted " +
            "to transformers' PhiForCausalLM (the current revision of microsoft/phi-1, microsoft/phi-1_5 or microsoft/phi-2 on the Hub: " +
            "model_type \"phi\", weights model.layers.N.self_attn.q_proj…)");

    private static ModelConfig Phi(ConfigReader r, string architecture, string modelType)
    {
        // microsoft/phi-* once shipped their own modelling code (model_type phi-msft): n_embd / n_head / n_layer /
        // rotary_dim and transformer.h.N.mixer.Wqkv weights, under the same architectures name. Read as PhiConfig, such a
        // config would silently take Phi-1's defaults.
        if (modelType != "phi")
            throw new NotSupportedException(
                $"{r.Source}: architectures PhiForCausalLM with model_type '{modelType}' is the pre-transformers Phi format " +
                "(its own modelling code, loaded with trust_remote_code), which SharpTune does not read; use the Hub revision " +
                "converted to transformers' Phi (model_type \"phi\", weights model.layers.N.self_attn.q_proj…)");
        var hidden = r.OptionalInt("hidden_size") ?? 2048;
        var heads = r.OptionalInt("num_attention_heads") ?? 32;
        var layers = r.OptionalInt("num_hidden_layers") ?? 24;
        if (heads <= 0 || hidden % heads != 0)
            throw new InvalidDataException(
                $"{r.Source}: hidden_size {hidden} must be a multiple of num_attention_heads {heads} (Phi heads are hidden_size / num_attention_heads wide)");
        // PhiAttention sizes its heads as hidden_size / num_attention_heads whatever head_dim says.
        if (r.OptionalInt("head_dim") is { } headDim && headDim != hidden / heads)
            throw new InvalidDataException(
                $"{r.Source}: field 'head_dim' is {headDim}, but Phi heads are hidden_size / num_attention_heads = {hidden} / {heads} = {hidden / heads} wide");
        var keyValueHeads = r.OptionalInt("num_key_value_heads") ?? heads;
        if (keyValueHeads <= 0 || heads % keyValueHeads != 0)
            throw new InvalidDataException(
                $"{r.Source}: num_attention_heads {heads} must be a multiple of num_key_value_heads {keyValueHeads}");
        var rope = SameRopeForEveryLayer(r, Uniform(layers, FullAttention));
        var rotaryShare = RotaryShare(r, rope, "partial_rotary_factor", 0.5);
        RequireEvenRotaryShare(r, hidden / heads, rotaryShare);
        RequireDropoutProbabilities(r, "resid_pdrop", "embd_pdrop", "attention_dropout");
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 51200,
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 8192,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = keyValueHeads,
            HeadDim = hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 2048,
            NormEps = r.OptionalDouble("layer_norm_eps") ?? 1e-5,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            PartialRotaryFactor = rotaryShare.Share,
            QkLayerNorm = r.OptionalBool("qk_layernorm") ?? false,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = true,
            MlpBias = true,
            HiddenAct = r.OptionalString("hidden_act") ?? "gelu_new",
            LayerTypes = Uniform(layers, FullAttention),
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 1,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [2],
        };
    }
}
