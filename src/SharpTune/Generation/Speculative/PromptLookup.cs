namespace SharpTune.Generation.Speculative;

/// <summary>
/// Prompt lookup decoding's candidates, as transformers' <c>PromptLookupCandidateGenerator.get_candidates</c>
/// (huggingface/transformers@00a11b6, src/transformers/generation/candidate_generator.py): the longest n-gram
/// (at most <c>max_matching_ngram_size</c>) ending the sequence is searched from the left; the first match with tokens
/// after it gives up to <c>num_output_tokens</c> of them, cut before the first end-of-sequence token.
/// </summary>
internal static class PromptLookup
{
    public static int[] Candidates(IReadOnlyList<int> sequence, int maxNgram, int count, IReadOnlySet<int> eos)
    {
        var length = sequence.Count;
        if (count <= 0) return [];
        for (var n = Math.Min(maxNgram, length - 1); n > 0; n--)
        {
            for (var at = 0; at + n <= length; at++)
            {
                var matches = true;
                for (var j = 0; j < n && matches; j++) matches = sequence[at + j] == sequence[length - n + j];
                if (!matches) continue;
                var start = at + n;
                var end = Math.Min(start + count, length);
                if (start >= end) continue;
                var chosen = new List<int>(end - start);
                for (var i = start; i < end; i++)
                {
                    if (eos.Contains(sequence[i])) break;   // the model could otherwise accept EOS and tokens past it
                    chosen.Add(sequence[i]);
                }
                return chosen.ToArray();   // a match was found (even one cut to nothing by EOS): no other is tried
            }
        }
        return [];
    }
}
