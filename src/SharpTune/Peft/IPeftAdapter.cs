using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// What the trainer, the exporter and the server know of a fine-tuning method. Each method (LoRA, prompt tuning, IA3…)
/// implements it in its own folder and registers one line in <see cref="PeftAdapters"/>.
/// </summary>
public interface IPeftAdapter
{
    /// <summary>PEFT's <c>peft_type</c> ("LORA", "PROMPT_TUNING", …).</summary>
    string PeftType { get; }

    /// <summary>
    /// Attaches the method to <paramref name="model"/> in place and freezes every base parameter
    /// (<c>requires_grad = false</c>), so base weights get no gradients and no optimizer state.
    /// </summary>
    void Inject(CausalLanguageModel model);

    /// <summary>The parameters to optimise, named by their path in the model.</summary>
    IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters { get; }

    /// <summary>
    /// The adapter's tensors under the key names PEFT saves (no adapter names in keys). The tensors are the live
    /// parameters, not copies: do not dispose them.
    /// </summary>
    IReadOnlyDictionary<string, Tensor> AdapterStateDict();

    /// <summary>Copies saved tensors into the adapter; every expected key must be present with its shape, and no other.</summary>
    void LoadAdapterState(IReadOnlyDictionary<string, Tensor> state);

    /// <summary>When false the model computes exactly the base model (DPO's reference model without a second copy).</summary>
    bool Enabled { get; set; }

    /// <summary>Folds the adapter into the base weights and restores the plain modules; the adapter is unusable afterwards.</summary>
    void MergeAndUnload();

    /// <summary>Removes the adapter without merging, restoring the base model exactly (modules and trainability).</summary>
    void Unload();

    /// <summary>The <c>adapter_config.json</c> content, as PEFT writes it.</summary>
    JsonObject AdapterConfigJson();

    /// <summary>
    /// What the method changed while injecting where PEFT warns and goes on (e.g. OFT's block size adjusted to a divisor of
    /// a layer's in_features), for the trainer's log and the commands that load adapters to show; empty for most methods.
    /// </summary>
    IReadOnlyList<string> Warnings => [];

    /// <summary>
    /// What <see cref="PeftAdapters.Save"/> writes: usually <see cref="AdapterConfigJson"/> and
    /// <see cref="AdapterStateDict"/>. A method whose initialisation changed the base weights (LoRA's PiSSA and OLoRA)
    /// returns instead the equivalent ordinary adapter for the original base; tensors it creates for that belong to the
    /// caller's dispose scope.
    /// </summary>
    (JsonObject Config, IReadOnlyDictionary<string, Tensor> Tensors) SavedForm() => (AdapterConfigJson(), AdapterStateDict());
}
