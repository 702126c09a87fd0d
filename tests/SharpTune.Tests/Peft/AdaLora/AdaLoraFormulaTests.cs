using SharpTune.Peft;
using SharpTune.Peft.AdaLora;
using SharpTune.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.AdaLora;

/// <summary>
/// AdaLoRA's arithmetic against formulas worked by hand: the SVD layer and its ΔW, the orthogonal regulariser in doubles,
/// PEFT's cubic budget schedule, the allocator's EMAs and masking on hand-made gradients, and PEFT's config checks
/// (tests/test_config.py's timing cases, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40).
/// </summary>
public class AdaLoraFormulaTests
{
    [Fact]
    public void LayerOutputAndDeltaWeightFollowTheFormulaWorkedByHand()
    {
        using var linear = nn.Linear(3, 2);
        using (no_grad())
        {
            linear.weight!.copy_(tensor(new float[,] { { 1, 0, 0 }, { 0, 1, 0 } }));
            linear.bias!.copy_(tensor(new float[] { 0.1f, -0.2f }));
        }
        var layer = SvdLinear.FromBase(linear, new AdaLoraConfig { InitR = 2, TargetR = 1, LoraAlpha = 4 });
        Assert.Equal(2.0, layer.RankNum);
        using (no_grad())
        {
            layer.lora_A.copy_(tensor(new float[,] { { 1, 0, 2 }, { 0, 1, -1 } }));   // (r 2, in 3)
            layer.lora_E.copy_(tensor(new float[,] { { 0.5f }, { 2 } }));              // (r 2, 1)
            layer.lora_B.copy_(tensor(new float[,] { { 1, 2 }, { -1, 0.5f } }));       // (out 2, r 2)
        }
        // By hand, x = (1, 2, 3): A ⊙ E = [[0.5, 0, 1], [0, 2, -2]]; (A ⊙ E) x = (3.5, -2); B · = (-0.5, -4.5);
        // scaling / (ranknum + 1e-5) = 4 / 2.00001; base W x + b = (1.1, 1.8).
        var s = 4 / 2.00001;
        using var y = layer.forward(tensor(new float[,] { { 1, 2, 3 } }));
        AssertClose([(float)(1.1 - 0.5 * s), (float)(1.8 - 4.5 * s)], y.data<float>().ToArray());
        // ΔW = B (A ⊙ E) s = [[0.5, 4, -3], [-0.5, 1, -2]] s.
        using var delta = layer.DeltaWeight();
        Assert.Equal([2L, 3L], delta.shape);
        AssertClose([.. new[] { 0.5, 4, -3, -0.5, 1, -2 }.Select(v => (float)(v * s))], delta.data<float>().ToArray());
        var merged = (Linear)layer.Fuse();
        AssertClose([.. new[] { 1 + 0.5 * s, 4 * s, -3 * s, -0.5 * s, 1 + s, -2 * s }.Select(v => (float)v)], merged.weight!.data<float>().ToArray());
    }

    [Fact]
    public void InitialisationIsPeftsAndTheModelStartsAsItsBase()
    {
        using var model = TestModels.Create("llama");
        var adapter = new AdaLoraAdapter(new AdaLoraConfig { TotalStep = 10 });
        adapter.Inject(model);
        Assert.Equal(4, adapter.Layers.Count);   // PEFT's AdaLoRA table for llama: q_proj, v_proj in 2 layers
        foreach (var (_, layer) in adapter.Layers)
        {
            Assert.Equal([12L, 1L], layer.lora_E.shape);
            Assert.Equal(0f, layer.lora_E.abs().max().item<float>());
            Assert.Equal(12.0, layer.RankNum);
            Assert.Equal(8.0, layer.Scaling);   // lora_alpha's default 8
            var std = layer.lora_A.std().item<float>();
            Assert.InRange(std, 0.015f, 0.025f);   // normal(0, 0.02) over 12 × 64 draws
        }
        PeftMethodChecks.OutputsEqualBase("llama", model);
    }

    [Fact]
    public void OrthogonalRegulariserIsTheMeanFrobeniusDistanceFromIdentityWorkedInDoubles()
    {
        using var model = TestModels.Create("llama");
        var adapter = new AdaLoraAdapter(new AdaLoraConfig { InitR = 3, TargetR = 1, TotalStep = 10, OrthRegWeight = 0.3 });
        adapter.Inject(model);
        PeftMethodChecks.Perturb(adapter, scale: 0.5);
        // PEFT's AdaLoraModel.forward: Σ over every lora_A (A Aᵀ − I) and lora_B (Bᵀ B − I) of the Frobenius norm, divided
        // by their count, times orth_reg_weight.
        double Distance(double[,] m, bool rows)
        {
            int r = rows ? m.GetLength(0) : m.GetLength(1), n = rows ? m.GetLength(1) : m.GetLength(0);
            double sum = 0;
            for (var i = 0; i < r; i++)
                for (var j = 0; j < r; j++)
                {
                    double dot = 0;
                    for (var k = 0; k < n; k++) dot += rows ? m[i, k] * m[j, k] : m[k, i] * m[k, j];
                    var d = dot - (i == j ? 1 : 0);
                    sum += d * d;
                }
            return Math.Sqrt(sum);
        }
        static double[,] Read(Tensor t)
        {
            var values = t.to(ScalarType.Float64).data<double>().ToArray();
            var (rows, cols) = ((int)t.size(0), (int)t.size(1));
            var m = new double[rows, cols];
            for (var i = 0; i < rows; i++) for (var j = 0; j < cols; j++) m[i, j] = values[i * cols + j];
            return m;
        }
        var expected = 0.3 * adapter.Layers.Sum(l => Distance(Read(l.Layer.lora_A), rows: true) + Distance(Read(l.Layer.lora_B), rows: false))
                       / (2 * adapter.Layers.Count);
        using var loss = adapter.RegularizationLoss()!;
        Assert.Equal(expected, loss.item<float>(), 4);
        // It carries gradients to lora_A and lora_B only.
        loss.backward();
        Assert.All(adapter.Layers, l => Assert.True(l.Layer.lora_A.grad!.abs().sum().item<float>() > 0));
        Assert.All(adapter.Layers, l => Assert.Null(l.Layer.lora_E.grad));
        Assert.Null(new AdaLoraAdapter(new AdaLoraConfig { TotalStep = 10, OrthRegWeight = 0 }).RegularizationLoss());
    }

    [Fact]
    public void TheRegulariserHasAZeroGradientNotANaNAtOrthonormalFactors()
    {
        // torch.norm(·, p="fro") has gradient 0 where the matrix is 0; √(Σx²) has 0 · ∞ = NaN there. A = rows of I and
        // B = columns of I make A·Aᵀ − I and Bᵀ·B − I exactly 0.
        using var model = TestModels.Create("llama");
        var adapter = new AdaLoraAdapter(new AdaLoraConfig { InitR = 3, TargetR = 1, TotalStep = 10, OrthRegWeight = 0.3 });
        adapter.Inject(model);
        using (no_grad())
            foreach (var (_, layer) in adapter.Layers)
            {
                layer.lora_A.copy_(eye(layer.lora_A.size(0), layer.lora_A.size(1)));
                layer.lora_B.copy_(eye(layer.lora_B.size(0), layer.lora_B.size(1)));
            }
        using var loss = adapter.RegularizationLoss()!;
        Assert.Equal(0f, loss.item<float>());
        loss.backward();
        foreach (var (path, layer) in adapter.Layers)
            foreach (var gradient in new[] { layer.lora_A.grad!, layer.lora_B.grad! })
            {
                Assert.False(gradient.isnan().any().item<bool>(), $"{path}: NaN in the regulariser's gradient");
                Assert.Equal(0f, gradient.abs().max().item<float>());
            }
    }

    [Fact]
    public void WithLoraAlphaZeroALayerRebuiltAtAKeptRankIsScaledByThatRank()
    {
        // PEFT's update_layer sets scaling = lora_alpha if lora_alpha > 0 else r; resize_modules_by_rank_pattern calls it
        // with the kept rank r′ and then restores ranknum = init_r, so the update becomes B (A ⊙ E) · r′ / (init_r + 1e-5).
        var config = new AdaLoraConfig { InitR = 4, TargetR = 2, LoraAlpha = 0 };
        using var full = nn.Linear(3, 2);
        var initial = SvdLinear.FromBase(full, config);
        Assert.Equal((4.0, 4.0), (initial.Scaling, initial.RankNum));
        using var reduced = nn.Linear(3, 2);
        var layer = SvdLinear.FromBase(reduced, config, rank: 2);
        Assert.Equal((2.0, 4.0), (layer.Scaling, layer.RankNum));
        using (no_grad())
        {
            layer.lora_A.copy_(tensor(new float[,] { { 1, 0, 2 }, { 0, 1, -1 } }));
            layer.lora_E.copy_(tensor(new float[,] { { 0.5f }, { 2 } }));
            layer.lora_B.copy_(tensor(new float[,] { { 1, 2 }, { -1, 0.5f } }));
        }
        // ΔW = B (A ⊙ E) · 2 / 4.00001 = [[0.5, 4, -3], [-0.5, 1, -2]] · 2 / 4.00001.
        using var delta = layer.DeltaWeight();
        AssertClose([.. new[] { 0.5, 4, -3, -0.5, 1, -2 }.Select(v => (float)(v * 2 / 4.00001))], delta.data<float>().ToArray());
        Assert.Equal(5.0, SvdLinear.FromBase(nn.Linear(3, 2), config with { LoraAlpha = 5 }, rank: 2).Scaling);
    }

    [Fact]
    public void BudgetScheduleFollowsPeftsCubicDecreaseWorkedByHand()
    {
        // 4 layers of init_r 4 (budget 16), target_r 2 (budget 8); tinit 2, tfinal 3, total_step 15, deltaT 2:
        // the budget falls over steps 3…12 as (16 − 8)(1 − (step − 2) / 10)³ + 8, truncated.
        var layers = Enumerable.Range(0, 4).Select(i => ($"l{i}", SvdLinear.FromBase(nn.Linear(3, 3), new AdaLoraConfig { InitR = 4, TargetR = 2 }))).ToList();
        using var allocator = new RankAllocator(layers, new AdaLoraConfig { InitR = 4, TargetR = 2, Tinit = 2, Tfinal = 3, TotalStep = 15, DeltaT = 2 });
        Assert.Equal((16, 8), (allocator.InitialBudget, allocator.TargetBudget));
        Assert.Equal((16, false), allocator.BudgetAt(0));
        Assert.Equal((16, false), allocator.BudgetAt(2));    // step ≤ tinit
        Assert.Equal((13, false), allocator.BudgetAt(3));    // 8 · 0.9³ + 8 = 13.832; 3 % 2 ≠ 0
        Assert.Equal((12, true), allocator.BudgetAt(4));     // 8 · 0.8³ + 8 = 12.096
        Assert.Equal((9, false), allocator.BudgetAt(7));     // 8 · 0.5³ + 8 = 9
        Assert.Equal((8, true), allocator.BudgetAt(12));     // 8 · 0³ + 8 (= total_step − tfinal)
        Assert.Equal((8, true), allocator.BudgetAt(13));     // final phase
    }

    [Fact]
    public void AllocatorSmoothsImportanceAndMasksTheLowestTripletsOnHandMadeGradients()
    {
        var config = new AdaLoraConfig { InitR = 2, TargetR = 1, TotalStep = 10, Tfinal = 2, Beta1 = 0.5, Beta2 = 0.5 };
        var layers = new[] { ("one", SvdLinear.FromBase(nn.Linear(2, 2), config)), ("two", SvdLinear.FromBase(nn.Linear(2, 2), config)) };
        foreach (var (_, l) in layers)
            using (no_grad()) foreach (var (_, p) in l.AdapterParameters()) p.fill_(1);
        // Gradients by hand (every parameter is 1, so ipt = |p · ∇p| = |∇p|).
        var grads = new Dictionary<string, float[,]>
        {
            ["one.lora_E"] = new float[,] { { 3 }, { 1 } }, ["one.lora_A"] = new float[,] { { 2, 0 }, { 0, 0 } }, ["one.lora_B"] = new float[,] { { 0, 0 }, { 0, 2 } },
            ["two.lora_E"] = new float[,] { { 2 }, { 4 } }, ["two.lora_A"] = new float[,] { { 0, 0 }, { 0, 0 } }, ["two.lora_B"] = new float[,] { { 0, 0 }, { 0, 0 } },
        };
        void Backward()
        {
            foreach (var (path, l) in layers)
                foreach (var (suffix, p) in l.AdapterParameters())
                {
                    p.grad?.zero_();
                    (p * tensor(grads[$"{path}.{suffix}"])).sum().backward();
                }
        }
        using var allocator = new RankAllocator(layers, config);
        Backward();
        allocator.UpdateImportance();
        Backward();
        allocator.UpdateImportance();
        // β = 0.5 twice with the same ipt: exp_avg_ipt = 0.5 ipt, then 0.75 ipt; exp_avg_unc = 0.5 · |ipt − 0.5 ipt| = 0.25 ipt,
        // then 0.5 · 0.25 ipt + 0.5 · |ipt − 0.75 ipt| = 0.25 ipt.
        var state = allocator.State();
        AssertClose([2.25f, 0.75f], state["exp_avg_ipt.one.lora_E"].data<float>().ToArray());
        AssertClose([0.75f, 0.25f], state["exp_avg_unc.one.lora_E"].data<float>().ToArray());
        // Scores (0.1875 ipt² per entry): triplet = E + mean of A's row + mean of B's column, in units of 0.1875:
        // one: (9 + 2 + 0, 1 + 0 + 2) = (11, 3); two: (4, 16). Budget 2 of 4 prunes the 2 lowest (3 and 4, the latter at the
        // threshold: PEFT masks score ≤ threshold).
        var pattern = allocator.MaskToBudget(2);
        Assert.Equal([true, false], pattern["one.lora_E"]);
        Assert.Equal([false, true], pattern["two.lora_E"]);
        Assert.Equal([1f, 0f], layers[0].Item2.lora_E.data<float>().ToArray());
        Assert.Equal([0f, 1f], layers[1].Item2.lora_E.data<float>().ToArray());

        // The final allocation (step total_step − tfinal = 8) fixes the pattern and drops the EMAs; later steps re-mask
        // what the optimizer revived.
        Backward();
        var fixedPattern = allocator.UpdateAndAllocate(8, pattern)!;
        Assert.Empty(allocator.State());
        using (no_grad()) foreach (var (_, l) in layers) l.lora_E.fill_(5);
        Assert.Same(fixedPattern, allocator.UpdateAndAllocate(9, fixedPattern));
        var kept = fixedPattern.Values.SelectMany(v => v).Count(k => k);
        Assert.Equal(2, kept);   // target budget: target_r 1 × 2 layers
        foreach (var (path, l) in layers)
            Assert.Equal(fixedPattern[path + ".lora_E"].Select(k => k ? 5f : 0f), l.lora_E.data<float>().ToArray());
    }

    [Theory]
    // PEFT's tests/test_config.py: test_adalora_config_valid_timing_works and test_adalora_config_timing_bounds_error.
    [InlineData(100, 0, 0, true)]
    [InlineData(100, 10, 10, true)]
    [InlineData(100, 79, 20, true)]
    [InlineData(100, 80, 19, true)]
    [InlineData(100, 20, 80, false)]
    [InlineData(100, 80, 20, false)]
    [InlineData(10, 20, 0, false)]
    [InlineData(10, 0, 10, false)]
    [InlineData(10, 10, 0, false)]
    [InlineData(10, 20, 20, false)]
    [InlineData(10, 0, 20, false)]
    public void ScheduleChecksArePefts(int totalStep, int tinit, int tfinal, bool valid)
    {
        var config = new AdaLoraConfig { TotalStep = totalStep, Tinit = tinit, Tfinal = tfinal };
        if (valid) config.Validate("test");
        else Assert.Contains("The supplied schedule values don't allow for a budgeting phase", Assert.Throws<ArgumentException>(() => config.Validate("test")).Message);
    }

    [Fact]
    public void OtherConfigChecksNameTheField()
    {
        Assert.Contains("orth_reg_weight", Assert.Throws<ArgumentException>(() => new AdaLoraConfig { OrthRegWeight = -1 }.Validate("c")).Message);
        Assert.Contains("target_r", Assert.Throws<ArgumentException>(() => new AdaLoraConfig { TargetR = 12, InitR = 12 }.Validate("c")).Message);
        Assert.Contains("beta1", Assert.Throws<ArgumentException>(() => new AdaLoraConfig { Beta1 = 1 }.Validate("c")).Message);
        Assert.Contains("total_step", Assert.Throws<ArgumentException>(() => new AdaLoraConfig { TotalStep = 0 }.Validate("c")).Message);
    }

    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-5, $"[{i}]: expected {expected[i]}, found {actual[i]}");
    }
}
