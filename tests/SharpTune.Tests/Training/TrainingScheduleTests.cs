using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>
/// The step arithmetic of transformers' Trainer. Expected values come from a line-by-line Python port of transformers'
/// <c>Trainer.set_initial_training_values</c>, <c>_inner_training_loop</c> (its chunking of each epoch's DataLoader
/// into <c>get_batch_samples</c> calls of gradient_accumulation_steps batches, the last one taking the remainder, and
/// <c>state.epoch = epoch + (step + 1) / steps_in_epoch</c>) and <c>EarlyStoppingCallback.check_metric_value</c> /
/// <c>_determine_best_metric</c> (huggingface/transformers main, trainer.py as stored at 2cda12cb, trainer_callback.py
/// at 55093b75), single process, DataLoader drop_last off, one loss unit per example; run with Debian's python3:
/// <c>run(Args(N=…, b=…, g=…, epochs=…, max_steps=…))</c>.
/// </summary>
public class TrainingScheduleTests
{
    /// <summary>(epoch, micro-batch indices in the epoch, examples in the step, state.epoch after it) per step.</summary>
    public static TheoryData<int, int, int, double, int, string> Cases() => new()
    {
        // 10 examples, micro-batch 4, 3 epochs: 3 micro-batches an epoch, the third of 2 examples; 9 steps.
        { 10, 4, 1, 3, -1, "0:0:4:0.3333333333333333 0:1:4:0.6666666666666666 0:2:2:1 1:0:4:1.3333333333333333 1:1:4:1.6666666666666665 1:2:2:2 2:0:4:2.3333333333333335 2:1:4:2.6666666666666665 2:2:2:3" },
        // 10 examples, micro-batch 1, accumulation 4: each epoch ends with a step of 2 micro-batches; 9 steps, not 8.
        { 10, 1, 4, 3, -1, "0:0,1,2,3:4:0.4 0:4,5,6,7:4:0.8 0:8,9:2:1 1:0,1,2,3:4:1.4 1:4,5,6,7:4:1.8 1:8,9:2:2 2:0,1,2,3:4:2.4 2:4,5,6,7:4:2.8 2:8,9:2:3" },
        // 7 examples, micro-batch 2, accumulation 3: the short step has one micro-batch of one example.
        { 7, 2, 3, 2, -1, "0:0,1,2:6:0.75 0:3:1:1 1:0,1,2:6:1.75 1:3:1:2" },
        // max_steps past the epochs: transformers runs ⌈5 / 2⌉ = 3 epochs of the same shape and stops inside the third.
        { 7, 2, 3, 1, 5, "0:0,1,2:6:0.75 0:3:1:1 1:0,1,2:6:1.75 1:3:1:2 2:0,1,2:6:2.75" },
        { 5, 2, 2, 2, -1, "0:0,1:4:0.6666666666666666 0:2:1:1 1:0,1:4:1.6666666666666665 1:2:1:2" },
        // Fractional epochs: max_steps = ⌈epochs × steps per epoch⌉, stopping inside an epoch.
        { 10, 4, 1, 0.5, -1, "0:0:4:0.3333333333333333 0:1:4:0.6666666666666666" },
        { 7, 2, 3, 2.7, -1, "0:0,1,2:6:0.75 0:3:1:1 1:0,1,2:6:1.75 1:3:1:2 2:0,1,2:6:2.75 2:3:1:3" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void StepsFollowTransformersTrainer(int examples, int microBatch, int accumulation, double epochs, int maxSteps, string expected)
    {
        var schedule = new TrainingSchedule(examples, microBatch, accumulation, epochs, maxSteps);
        var steps = Enumerable.Range(0, schedule.TotalSteps).Select(step =>
        {
            var batches = schedule.MicroBatches(step);
            Assert.All(batches, b => Assert.Equal(0, b.Start % microBatch));
            return $"{schedule.EpochOf(step)}:{string.Join(",", batches.Select(b => b.Start / microBatch))}:{batches.Sum(b => b.Count)}:" +
                   schedule.EpochAfter(step).ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        });
        Assert.Equal(expected, string.Join(" ", steps));
    }

    [Theory]
    // TrainerState.compute_steps: logging/eval/save_steps below 1 are math.ceil(max_steps * x); whole numbers stay.
    [InlineData(9, 0.1, 1)]
    [InlineData(9, 0.25, 3)]
    [InlineData(9, 0.33, 3)]
    [InlineData(31, 0.1, 4)]
    [InlineData(31, 0.25, 8)]
    [InlineData(31, 0.33, 11)]
    [InlineData(31, 0.05, 2)]
    [InlineData(100, 0.33, 33)]
    [InlineData(100, 5, 5)]
    [InlineData(100, 1, 1)]
    [InlineData(100, 0, 0)]
    public void AFractionalIntervalIsThatShareOfTheRunRoundedUp(int totalSteps, double every, int expected) =>
        Assert.Equal(expected, TrainingSchedule.Interval(every, totalSteps));

    [Fact]
    public void RanksShareEachStepsMicroBatchesAndKeepTheStepCount()
    {
        // Global batch 4 either way (one process accumulating 2 micro-batches of 2, or 2 ranks with 1 each): same steps.
        var single = new TrainingSchedule(32, 2, 2, 1, -1);
        var ranks = new TrainingSchedule(32, 2, 1, 1, -1, ranks: 2);
        Assert.Equal((8, 8), (single.TotalSteps, ranks.TotalSteps));
        for (var step = 0; step < 8; step++)
            Assert.Equal(single.MicroBatches(step), ranks.MicroBatches(step));
    }

    [Fact]
    public void BadSizesAreRefusedNamingTheField()
    {
        Assert.Contains("micro_batch_size", Assert.Throws<ArgumentException>(() => new TrainingSchedule(4, 0, 1, 1, -1)).Message);
        Assert.Contains("gradient_accumulation", Assert.Throws<ArgumentException>(() => new TrainingSchedule(4, 1, 0, 1, -1)).Message);
        Assert.Contains("epochs", Assert.Throws<ArgumentException>(() => new TrainingSchedule(4, 1, 1, 0, -1)).Message);
    }

    [Fact]
    public void EarlyStoppingCountsImprovementsSmallerThanTheThresholdAsNone()
    {
        // Port of EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.05) with
        // metric_for_best_model="loss", evaluating every step: stops at the 7th evaluation, best at the 7th.
        double[] losses = [1.0, 0.98, 0.97, 0.90, 0.89, 0.895, 0.888];
        int[] expectedCounts = [0, 1, 2, 0, 1, 2, 3];
        int[] expectedBestSteps = [1, 2, 3, 4, 5, 5, 7];
        var state = new TrainerState(0, null, null, 0, 0);
        for (var i = 0; i < losses.Length; i++)
        {
            state = state with { Step = i + 1 };
            (state, var newBest) = Trainer.AfterEvaluation(state, losses[i], threshold: 0.05);
            Assert.Equal(expectedCounts[i], state.EvaluationsWithoutImprovement);
            Assert.Equal(expectedBestSteps[i], state.BestStep);
            Assert.Equal(expectedBestSteps[i] == i + 1, newBest);
        }
        Assert.Equal(0.888, state.BestValidationLoss);
    }

    [Fact]
    public void ANaNValidationLossIsNeverTheBest()
    {
        var (state, newBest) = Trainer.AfterEvaluation(new TrainerState(1, null, null, 0, 0), double.NaN, 0);
        Assert.False(newBest);
        Assert.Null(state.BestValidationLoss);
        (state, newBest) = Trainer.AfterEvaluation(state with { Step = 2 }, 1.5, 0);
        Assert.True(newBest);
        Assert.Equal((1.5, 2), (state.BestValidationLoss!.Value, state.BestStep!.Value));
    }
}
