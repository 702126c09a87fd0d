using SharpTune.Tests.Support;

namespace SharpTune.Tests.Models;

public class TestModelDeterminismTests
{
    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void TheSameSeedBuildsTheSameModel(string kind)
    {
        using var a = TestModels.Create(kind);
        using var b = TestModels.Create(kind);
        var bState = b.state_dict();
        foreach (var (name, value) in a.state_dict())
            Assert.True(value.allclose(bState[name], rtol: 0, atol: 0), name);
    }
}
