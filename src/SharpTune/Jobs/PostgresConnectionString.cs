using Npgsql;

namespace SharpTune.Jobs;

/// <summary>
/// Turns the <c>postgres://user:password@host:port/database?sslmode=require</c> URLs that libpq, psql and most hosting
/// services hand out into Npgsql's keyword form (Npgsql reads only the latter); an Npgsql connection string passes through.
/// </summary>
internal static class PostgresConnectionString
{
    public static bool IsPostgres(string spec) =>
        spec.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || spec.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase)
        || spec.Contains("Host=", StringComparison.OrdinalIgnoreCase);

    public static string From(string spec)
    {
        if (!spec.Contains("://", StringComparison.Ordinal)) return new NpgsqlConnectionStringBuilder(spec).ConnectionString;
        if (!Uri.TryCreate(spec, UriKind.Absolute, out var uri) || uri.Scheme is not ("postgres" or "postgresql"))
            throw new ArgumentException($"'{Redact(spec)}' is not a postgres://user:password@host:port/database URL");
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host,
            Port = uri.IsDefaultPort || uri.Port <= 0 ? 5432 : uri.Port,
            Database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')) is { Length: > 0 } db ? db : null,
        };
        if (uri.UserInfo.Length > 0)
        {
            var parts = uri.UserInfo.Split(':', 2);
            builder.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length == 2) builder.Password = Uri.UnescapeDataString(parts[1]);
        }
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var kv = pair.Split('=', 2);
            var key = Uri.UnescapeDataString(kv[0]);
            var value = kv.Length == 2 ? Uri.UnescapeDataString(kv[1]) : "";
            // libpq's names where they differ from Npgsql's keywords.
            key = key.ToLowerInvariant() switch
            {
                "sslmode" => "SSL Mode",
                "connect_timeout" => "Timeout",
                "application_name" => "Application Name",
                _ => key,
            };
            try { builder[key] = value; }
            catch (ArgumentException) { throw new ArgumentException($"the database URL's parameter '{kv[0]}' is not a connection setting Npgsql knows"); }
        }
        return builder.ConnectionString;
    }

    /// <summary>The URL without its password, for messages.</summary>
    public static string Redact(string spec) =>
        System.Text.RegularExpressions.Regex.Replace(spec, "(://[^:/@]*:)[^@]*@", "$1***@");
}
