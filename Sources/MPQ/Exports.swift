// `import MPQ` gives every layer of the library.
@_exported import MPQGGUF
@_exported import MPQGraph
@_exported import MPQLLM
@_exported import MPQQuantization
@_exported import MPQReports
@_exported import MPQRuntime
@_exported import MPQSearch
