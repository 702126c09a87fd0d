using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>
/// The decode fast path (fused q/k/v and gate/up projections, single-query attention without repeated KV heads or
/// window masks) against the general path it replaces (<see cref="InferenceShortcuts.Disable"/>): greedy tokens
/// identical on every shared model and every architecture, alone and in a left-padded batch, with and without a LoRA
/// adapter (which keeps the unfused path).
/// </summary>
public class FastDecodeTests
{
    private static readonly GenerationOptions Greedy = new() { Temperature = 0, EosTokenIds = [], MaxNewTokens = 16 };

    [SharedAssetTheory("models")]
    [InlineData("stories260K")]
    [InlineData("tinystories-656k")]
    [InlineData("reference-archs/qwen3_tied")]
    [InlineData("reference-archs/gemma3_pattern")]
    [InlineData("reference-archs/phi3_mini")]
    public void SharedModelsDecodeTheSameTokensFastAndGeneral(string folder)
    {
        using var model = PretrainedModel.Load(Path.Combine(TestAssets.SharedDir, "models", folder), ScalarType.Float32);
        AssertSameTokens(model, folder);
        InjectRandomLora(model);
        AssertSameTokens(model, folder + " with LoRA");
    }

    [Theory]
    [MemberData(nameof(TestModels.Kinds), MemberType = typeof(TestModels))]
    public void EveryArchitectureDecodesTheSameTokensFastAndGeneral(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        AssertSameTokens(model, kind);
        InjectRandomLora(model);
        AssertSameTokens(model, kind + " with LoRA");
    }

    /// <summary>Prompts of 3, 11 and 20 tokens together (left-padded), and the 11 alone; 16 new tokens: past every window here.</summary>
    private static void AssertSameTokens(CausalLanguageModel model, string what)
    {
        var random = new Random(7);
        var prompts = new[] { 3, 11, 20 }
            .Select(n => (IReadOnlyList<int>)Enumerable.Range(0, n).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray()).ToArray();
        IReadOnlyList<int>[] Run(bool fast, bool together)
        {
            using var general = fast ? null : InferenceShortcuts.Disable();
            return together
                ? TokenGenerator.Generate(model, prompts, Greedy).Select(r => r.Tokens).ToArray()
                : [TokenGenerator.Generate(model, [prompts[1]], Greedy)[0].Tokens];
        }
        foreach (var together in new[] { false, true })
        {
            var expected = Run(fast: false, together);
            var actual = Run(fast: true, together);
            for (var i = 0; i < expected.Length; i++)
                Assert.True(expected[i].SequenceEqual(actual[i]),
                    $"{what}, prompt {i}{(together ? " in a padded batch" : " alone")}: general [{string.Join(",", expected[i])}] vs fast [{string.Join(",", actual[i])}]");
        }
    }

    private static void InjectRandomLora(CausalLanguageModel model)
    {
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = TargetModules.AllLinear });
        adapter.Inject(model);
        // Both factors drawn from a generator of the test's own: the global one is shared with the tests running beside
        // this one, and a different adapter now and then could bring two logits within rounding of each other.
        using var generator = new TorchSharp.torch.Generator(11);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
            if (name.Contains("lora_A") || name.Contains("lora_B")) p.normal_(0, name.Contains("lora_A") ? 0.2 : 0.05, generator);
        model.eval();
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    [InlineData("granite")]
    [InlineData("olmo2")]
    [InlineData("gemma")]
    [InlineData("qwen3moe")]
    [InlineData("gemma2")]
    [InlineData("gemma3")]
    public void FusedProjectionsAreInvisibleInTheStateDictAndSavedFilesAndFollowTraining(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        var before = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        TokenGenerator.Generate(model, [[5, 6, 7]], Greedy with { MaxNewTokens = 2 });
        var kProj = (Linear)model.named_modules().First(m => m.name.EndsWith("self_attn.k_proj", StringComparison.Ordinal)).module;
        var upProj = (Linear)model.named_modules().First(m => m.name.EndsWith("mlp.up_proj", StringComparison.Ordinal)).module;
        Assert.True(kProj.weight!.storage_offset() > 0, "k_proj should now view its rows of the fused q/k/v buffer");
        Assert.True(upProj.weight!.storage_offset() > 0, "up_proj should now view its rows of the fused gate/up buffer");

        var after = model.state_dict();
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (name, value) in before)
            Assert.True(value.equal(after[name]).all().item<bool>(), $"{name} changed");
        using (var dir = new TempDir())
        {
            PretrainedModel.Save(model, dir.Path);
            using var reloaded = PretrainedModel.Load(dir.Path, ScalarType.Float32);
            foreach (var (name, value) in reloaded.state_dict())
                Assert.True(value.equal(before[name]).all().item<bool>(), $"{name} differs after a save and load");
        }

        // A training step writes the shared storage in place: the fused product reads the new weights.
        model.train();
        using var ids = tensor(new long[,] { { 1, 9, 4, 30, 2 } });
        using (var optimizer = optim.SGD(model.parameters(), 0.5))
        {
            using var loss = model.Forward(ids).pow(2).mean();
            loss.backward();
            optimizer.step();
        }
        model.eval();
        Assert.False(kProj.weight!.equal(before.First(kv => kv.Key.EndsWith("self_attn.k_proj.weight", StringComparison.Ordinal)).Value).all().item<bool>());
        using var noGrad = no_grad();
        using var fused = model.Forward(ids);
        Tensor general;
        using (InferenceShortcuts.Disable()) general = model.Forward(ids);
        Assert.True(fused.allclose(general, rtol: 0, atol: 1e-5), $"fused and separate projections differ by {(fused - general).abs().max().item<float>()}");
        general.Dispose();
        foreach (var value in before.Values) value.Dispose();
    }

    [Fact]
    public void SignFoldedRotationEqualsRotateHalfBitForBit()
    {
        var config = ModelConfig.FromJson(TestModels.Phi3ConfigJson());       // partial rotary (8 of 16), longrope factor
        using var rope = RotaryEmbedding.ForConfig(config, CPU);
        using var positions = tensor(new long[,] { { 0, 1, 7, 70 } });      // 70 > 64: the long factors and their scale
        using var q = randn(1, 2, 4, 16);
        var angles = rope.Angles(positions, ScalarType.Float32);
        var tables = rope.RotationTables(positions, ScalarType.Float32);
        using var expected = RotaryEmbedding.Rotate(q, angles);
        using var actual = RotaryEmbedding.ApplyRotation(q, tables);
        Assert.True(expected.equal(actual).all().item<bool>());
        using var full = randn(1, 2, 4, 8);                                  // the whole head rotated
        Assert.True(RotaryEmbedding.Rotate(full, angles).equal(RotaryEmbedding.ApplyRotation(full, tables)).all().item<bool>());
    }
}
