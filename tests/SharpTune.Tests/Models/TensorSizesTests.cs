using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

public class TensorSizesTests
{
    [Fact]
    public void SizesEqualTheShapeForEveryRankAndForViews()
    {
        using var scalar = tensor(3f);
        using var matrix = zeros(5, 7);
        using var view = zeros(2, 3, 4, 6).transpose(1, 3).narrow(2, 1, 2);
        foreach (var t in new[] { scalar, matrix, view }) Assert.Equal(t.shape, t.Sizes());
        Assert.Equal([2L, 6, 2, 3], view.Sizes());
    }
}
