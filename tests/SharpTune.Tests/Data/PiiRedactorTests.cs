using SharpTune.Data.Curation;

namespace SharpTune.Tests.Data;

public class PiiRedactorTests
{
    [Theory]
    [InlineData("mail jane.doe+x@mail.example.co.uk now", "mail [EMAIL] now", PiiKind.Email)]
    [InlineData("call +1 415-555-2671 today", "call [PHONE] today", PiiKind.Phone)]
    [InlineData("call (415) 555-2671 today", "call [PHONE] today", PiiKind.Phone)]
    [InlineData("card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok", PiiKind.CreditCard)]
    [InlineData("card 5500-0000-0000-0004 ok", "card [CREDIT_CARD] ok", PiiKind.CreditCard)]
    [InlineData("from 192.168.0.1 to", "from [IP_ADDRESS] to", PiiKind.IpAddress)]
    [InlineData("v6 2001:db8::8a2e:370:7334 here", "v6 [IP_ADDRESS] here", PiiKind.IpAddress)]
    [InlineData("loopback ::1 here", "loopback [IP_ADDRESS] here", PiiKind.IpAddress)]
    public void Redacts_and_counts(string input, string expected, PiiKind kind)
    {
        var redactor = new PiiRedactor();
        Assert.Equal(expected, redactor.Redact(input));
        Assert.Equal(1, redactor.Counts[kind]);
    }

    [Theory]
    [InlineData("card 4111 1111 1111 1112 fails Luhn")]
    [InlineData("version 1.2.3 and 999.1.1.1 are not addresses")]
    [InlineData("in 2024-01-15 we sold 1000 2000 units at 12:30")]
    [InlineData("ratio 3:4 and time 10:15:20")]
    public void Leaves_lookalikes_alone(string input) => Assert.Equal(input, new PiiRedactor().Redact(input));

    [Fact]
    public void Luhn_matches_published_test_numbers()
    {
        // Standard test card numbers published by payment processors.
        Assert.True(PiiRedactor.IsLuhnValid("4111111111111111"));
        Assert.True(PiiRedactor.IsLuhnValid("378282246310005"));
        Assert.False(PiiRedactor.IsLuhnValid("4111111111111112"));
    }
}
