/// Why a `GGUFTokenizer` could not be built from a file's metadata.
public struct GGUFTokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The kind of failure, for callers and tests that branch on it.
    public enum Code: String, Sendable {
        /// A required key is absent.
        case missingKey
        /// A key holds a value of the wrong type (e.g. a string where an array of strings is expected).
        case wrongType
        /// Keys disagree (array lengths, token ids out of range, a BOS requested but none defined).
        case inconsistent
        /// A tokenizer model or pre-tokenizer this implementation does not handle.
        case unsupported
    }

    /// The kind of failure.
    public var code: Code
    /// The metadata key concerned, or "".
    public var key: String
    /// What is wrong, for the user.
    public var message: String

    /// An error of kind `code` about metadata `key` ("" when no single key is at fault).
    public init(_ code: Code, key: String, _ message: String) {
        self.code = code
        self.key = key
        self.message = message
    }

    /// "key: message", or the message alone when no key is named.
    public var description: String { key.isEmpty ? message : "\(key): \(message)" }
}
