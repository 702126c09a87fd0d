namespace SharpTune.Tokenization;

/// <summary>
/// GPT-2's reversible byte ↔ printable-character table: every byte maps to one character, so byte-level BPE
/// vocabularies can be stored as text (space = 'Ġ', newline = 'Ċ').
/// </summary>
internal static class ByteLevelAlphabet
{
    public static readonly char[] ByteToChar = BuildByteToChar();
    public static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        var printable = new bool[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        int next = 0;
        for (int b = 0; b < 256; b++)
            table[b] = printable[b] ? (char)b : (char)(256 + next++);
        return table;
    }

    /// <summary>UTF-8 bytes of <paramref name="text"/>, each written as its byte-level character.</summary>
    public static string Encode(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        return string.Create(bytes.Length, bytes, (span, b) =>
        {
            for (int i = 0; i < b.Length; i++) span[i] = ByteToChar[b[i]];
        });
    }

    /// <summary>Appends the bytes a token stands for; a token with a character outside the table (an added token
    /// such as "&lt;|im_start|&gt;" written in plain text) contributes its own UTF-8 bytes, as Hugging Face does.</summary>
    public static void AppendBytes(string token, List<byte> into)
    {
        foreach (var c in token)
            if (!CharToByte.ContainsKey(c))
            {
                into.AddRange(System.Text.Encoding.UTF8.GetBytes(token));
                return;
            }
        foreach (var c in token) into.Add(CharToByte[c]);
    }
}
