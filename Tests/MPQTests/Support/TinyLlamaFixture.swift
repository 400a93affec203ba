import Foundation

/// The bundled full-precision decoder (examples/tiny-llama-jargon) the LLM tests run on.
let tinyLlamaPath = repositoryRoot.appendingPathComponent("examples/tiny-llama-jargon/model-F16.gguf").path

/// `count` characters of the fixture text `name` (under .fixtures/data/text) from character `from`,
/// written to a file in `folder`; its path.
func fixtureTextSlice(_ name: String, from: Int, count: Int, in folder: URL) throws -> String {
    let url = fixturesFolder.appendingPathComponent("data/text/\(name)")
    let text = String(decoding: try Data(contentsOf: url), as: UTF8.self)
    let start = text.index(text.startIndex, offsetBy: min(from, text.count))
    let end = text.index(start, offsetBy: min(count, text.distance(from: start, to: text.endIndex)))
    let path = folder.appendingPathComponent("\(name).\(from).txt")
    try Data(String(text[start..<end]).utf8).write(to: path)
    return path.path
}
