using System.Runtime.CompilerServices;

// Chunked reads and writes are tested with small chunk sizes that only the internal overloads accept.
[assembly: InternalsVisibleTo("SharpTune.Tests")]
