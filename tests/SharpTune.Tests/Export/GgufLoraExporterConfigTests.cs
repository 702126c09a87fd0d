using SharpTune.Export.Gguf;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Export;

public class GgufLoraExporterConfigTests
{
    [Theory]
    [InlineData("\"lora_bias\": true", "lora_bias")]                       // PEFT saves lora_B.bias, which llama.cpp has no place for
    [InlineData("\"alora_invocation_tokens\": [5]", "alora_invocation_tokens")]   // aLoRA applies only after the invocation
    [InlineData("\"init_lora_weights\": \"pissa\"", "init_lora_weights")]  // PiSSA's base weights differ from the model's
    [InlineData("\"init_lora_weights\": \"olora\"", "init_lora_weights")]  // as PiSSA: relative to the residual base
    public void AdapterFieldsTheExportCannotHonourAreRefusedNamingThem(string field, string expected)
    {
        using var dir = new TempDir();
        var model = Directory.CreateDirectory(Path.Combine(dir.Path, "model")).FullName;
        File.WriteAllText(Path.Combine(model, "config.json"), TestModels.LlamaConfigJson().ToJsonString());
        var adapter = Directory.CreateDirectory(Path.Combine(dir.Path, "adapter")).FullName;
        File.WriteAllText(Path.Combine(adapter, "adapter_config.json"),
            $$"""{ "peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], {{field}} }""");
        var error = Assert.ThrowsAny<Exception>(() => GgufLoraExporter.Export(new GgufLoraExportOptions
            { AdapterDir = adapter, ModelDir = model, OutputPath = Path.Combine(dir.Path, "lora.gguf") }));
        Assert.Contains(expected, error.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, "lora.gguf")));
    }
}
