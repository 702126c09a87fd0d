using SharpTune.Server.Engine;
using SharpTune.Tests.Generation;
using static TorchSharp.torch;

namespace SharpTune.Tests.Server;

/// <summary>
/// The server's per-row processing against vLLM's sampler. Expected values were produced by vLLM's own functions run with
/// Debian's torch 1.13.1: the order of vllm/v1/sample/sampler.py @ 3e34265 (logit_bias, then apply_penalties of
/// vllm/model_executor/layers/utils.py @ 0035860 with repetition penalty 1, the greedy argmax, apply_temperature, then
/// apply_top_k_top_p of vllm/v1/sample/ops/topk_topp_sampler.py @ 3babc05); −∞ marks a removed token.
/// </summary>
public sealed class BatchSamplerReferenceTests
{
    private const float Removed = float.NegativeInfinity;

    private static readonly float[,] Logits =
    {
        { 2.0f, -1.5f, 0.5f, 3.0f, -0.25f, 1.0f, 0.0f, -2.0f },
        { 0.3f, 0.3f, -4.0f, 1.7f, 2.2f, -0.6f, 0.9f, 0.1f },
        { 0.0f, 1.0f, 0.5f, 2.5f, 2.4f, 0.0f, 0.0f, 0.0f },
    };

    // Rows: (temperature 0.8, top_k 4, top_p 0.9, presence 0.5, frequency 0.25, logit_bias {0: -100, 7: 2.5}, output [3, 5, 5, 1]),
    // (1.2, -, -, presence -1, frequency 2, output [2, 2]), (greedy, presence 2, output [3]). Prompts [3, 3], [4], [0]
    // are not penalised: presence and frequency count generated tokens only.
    private static readonly int[][] Outputs = [[3, 5, 5, 1], [2, 2], [3]];

    private static List<SamplingGroup> Groups(double secondTemperature = 1.2) =>
    [
        new(0, 1, 0.8, 0.9, 4, null, PresencePenalty: 0.5, FrequencyPenalty: 0.25, LogitBias: new Dictionary<int, double> { [0] = -100, [7] = 2.5 }),
        new(1, 1, secondTemperature, 1.0, 0, null, PresencePenalty: -1, FrequencyPenalty: 2),
        new(2, 1, 0, 1.0, 0, null, PresencePenalty: 2),
    ];

    [Fact]
    public void BiasPenaltiesTemperatureTopKAndTopPMatchVllm()
    {
        using var sampler = new BatchSampler(Groups(), 3, 8, r => Outputs[r]);
        using var scope = NewDisposeScope();
        var processed = sampler.Process(tensor(Logits), null).data<float>().ToArray();
        float[] expected =
        [
            Removed, Removed, 0.625f, 2.8125f, Removed, Removed, Removed, 0.625f,
            0.25f, 0.25f, -5.8333330154418945f, 1.4166666269302368f, 1.8333332538604736f, -0.5f, 0.7499999403953552f, 0.0833333283662796f,
        ];
        TokenSamplerReferenceTests.AssertLogits(expected, processed[..16]);
        // The greedy row: vLLM's argmax after the penalties is token 4 (token 3's 2.5 less presence 2), not the raw argmax 3.
        Assert.Equal(4, sampler.Next(tensor(Logits), null, _ => true)[2]);
    }

    [Fact]
    public void TokensAcceptedDuringDecodingCountAsThoseGivenAtTheStart()
    {
        // A batch built with the outputs so far and one fed them token by token penalise alike.
        using var given = new BatchSampler(Groups(), 3, 8, r => Outputs[r]);
        using var fed = new BatchSampler(Groups(), 3, 8);
        for (var r = 0; r < 3; r++)
            foreach (var token in Outputs[r]) fed.Accept(r, token);
        using var scope = NewDisposeScope();
        Assert.Equal(given.Process(tensor(Logits), null).data<float>().ToArray(), fed.Process(tensor(Logits), null).data<float>().ToArray());
    }

    [Fact]
    public void ATemperatureBelowVllmsEpsilonIsGreedy()
    {
        // vLLM's _SAMPLING_EPS = 1e-5: a smaller temperature takes the argmax of the penalised logits (row 1: token 4),
        // even one that is 0 in fp32, where dividing by it would leave nothing but infinities and NaN to draw from.
        using var sampler = new BatchSampler(Groups(secondTemperature: 1e-300), 3, 8, r => Outputs[r]);
        using var scope = NewDisposeScope();
        for (var i = 0; i < 20; i++) Assert.Equal(4, sampler.Next(tensor(Logits), null, _ => true)[1]);
    }

    [Fact]
    public void RepetitionPenaltyCoversPromptAndOutputBeforeTheOtherPenalties()
    {
        // vLLM rows: (temperature 1, repetition 1.3, prompt [3, 1], output [6]); (0.5, repetition 0.8, presence 0.5,
        // logit_bias {4: -1}, prompt [2], output [4, 4]); (greedy, repetition 2, prompt [3], nothing generated yet).
        List<SamplingGroup> groups =
        [
            new(0, 1, 1.0, 1.0, 0, null, RepetitionPenalty: 1.3),
            new(1, 1, 0.5, 1.0, 0, null, PresencePenalty: 0.5, LogitBias: new Dictionary<int, double> { [4] = -1 }, RepetitionPenalty: 0.8),
            new(2, 1, 0, 1.0, 0, null, RepetitionPenalty: 2),
        ];
        int[][] prompts = [[3, 1], [2], [3]], outputs = [[6], [4, 4], []];
        using var sampler = new BatchSampler(groups, 3, 8, r => outputs[r], r => prompts[r]);
        using var scope = NewDisposeScope();
        float[] expected =
        [
            2.0f, -1.9499999284744263f, 0.5f, 2.307692289352417f, -0.25f, 1.0f, 0.0f, -2.0f,
            0.6000000238418579f, 0.6000000238418579f, -6.400000095367432f, 3.4000000953674316f, 2.0f, -1.2000000476837158f, 1.7999999523162842f, 0.20000000298023224f,
        ];
        TokenSamplerReferenceTests.AssertLogits(expected, sampler.Process(tensor(Logits), null).data<float>().ToArray()[..16]);
        // The greedy row: its prompt token 3 (2.5 -> 1.25) falls below token 4; vLLM's argmax is 4.
        Assert.Equal(4, sampler.Next(tensor(Logits), null, _ => true)[2]);
    }
}
