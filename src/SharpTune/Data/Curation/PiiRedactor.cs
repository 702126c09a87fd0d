using System.Net;
using System.Text.RegularExpressions;

namespace SharpTune.Data.Curation;

/// <summary>Kinds of personal data the redactor replaces.</summary>
public enum PiiKind { Email, Phone, CreditCard, IpAddress }

/// <summary>
/// Replaces e-mail addresses, phone numbers, payment card numbers (13–19 digits passing the Luhn check) and IPv4/IPv6
/// addresses (validated by <see cref="IPAddress.TryParse(string, out IPAddress)"/>) with placeholders such as
/// <c>[EMAIL]</c>, counting each kind. Patterns favour precision: a digit run that fails Luhn or a dotted quad with an
/// octet over 255 is left alone.
/// </summary>
public sealed partial class PiiRedactor
{
    private readonly Dictionary<PiiKind, long> _counts = new();

    /// <summary>Replacements made so far, per kind.</summary>
    public IReadOnlyDictionary<PiiKind, long> Counts => _counts;

    /// <summary>The placeholder written for a kind.</summary>
    public static string Placeholder(PiiKind kind) => kind switch
    {
        PiiKind.Email => "[EMAIL]",
        PiiKind.Phone => "[PHONE]",
        PiiKind.CreditCard => "[CREDIT_CARD]",
        _ => "[IP_ADDRESS]",
    };

    /// <summary>The text with every detected item replaced; <see cref="Counts"/> grows by what was found.</summary>
    public string Redact(string text)
    {
        text = Email().Replace(text, m => Count(PiiKind.Email));
        text = CardCandidate().Replace(text, m => IsLuhnValid(m.Value) ? Count(PiiKind.CreditCard) : m.Value);
        text = IPv6Candidate().Replace(text, m =>
            m.Value.Contains("::") || m.Value.Count(c => c == ':') == 7
                ? IPAddress.TryParse(m.Value, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
                    ? Count(PiiKind.IpAddress) : m.Value
                : m.Value);
        text = IPv4().Replace(text, m => Count(PiiKind.IpAddress));
        text = Phone().Replace(text, m => IsPhone(m.Value) ? Count(PiiKind.Phone) : m.Value);
        return text;
    }

    /// <summary>The Luhn (mod 10) checksum used by payment card numbers; spaces and dashes are ignored.</summary>
    public static bool IsLuhnValid(string number)
    {
        int sum = 0, digits = 0;
        for (int i = number.Length - 1; i >= 0; i--)
        {
            char c = number[i];
            if (c is ' ' or '-') continue;
            if (!char.IsAsciiDigit(c)) return false;
            int d = c - '0';
            if (digits++ % 2 == 1) { d *= 2; if (d > 9) d -= 9; }
            sum += d;
        }
        return digits is >= 13 and <= 19 && sum % 10 == 0;
    }

    private string Count(PiiKind kind)
    {
        _counts[kind] = _counts.GetValueOrDefault(kind) + 1;
        return Placeholder(kind);
    }

    private static int Digits(string s) => s.Count(char.IsAsciiDigit);

    // Plain digit groups are common in prose (years, amounts, dates), so a phone number needs 7–15 digits and either
    // an international prefix, an area code in parentheses, or at least two separators — and must not be a date.
    private static bool IsPhone(string s) =>
        Digits(s) is >= 7 and <= 15 && !IsoDate().IsMatch(s) &&
        (s.StartsWith('+') || s.Contains('(') || s.Count(c => c is ' ' or '-' or '.') >= 2);

    [GeneratedRegex(@"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$")]
    private static partial Regex IsoDate();

    [GeneratedRegex(@"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")]
    private static partial Regex Email();

    [GeneratedRegex(@"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")]
    private static partial Regex CardCandidate();

    [GeneratedRegex(@"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")]
    private static partial Regex IPv6Candidate();

    [GeneratedRegex(@"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])")]
    private static partial Regex IPv4();

    [GeneratedRegex(@"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w])")]
    private static partial Regex Phone();
}
