/// A problem with a GGUF or importance-matrix file, or with data given to a writer.
///
/// `description` is one line naming the file and, where relevant, the tensor or key and
/// what is wrong with it; `code` lets callers and tests tell the cases apart.
public struct GGUFError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The kind of problem.
    public enum Code: String, Sendable {
        /// The file ends before a structure it declares.
        case truncated
        /// The first four bytes are not "GGUF".
        case badMagic
        /// A version other than 2 or 3 (or a big-endian file).
        case unsupportedVersion
        /// A count (tensors, keys, array elements, string bytes) larger than the file could hold.
        case absurdCount
        /// A metadata value type code that GGUF does not define, or arrays nested too deeply.
        case badValueType
        /// A bool stored as something other than 0 or 1.
        case badValue
        /// A key or tensor name that is empty or not valid UTF-8.
        case badName
        /// The same key twice.
        case duplicateKey
        /// `general.alignment` is not a uint32 power of two.
        case badAlignment
        /// The same tensor name twice.
        case duplicateTensor
        /// More than four dimensions.
        case tooManyDimensions
        /// A dimension that is zero or negative.
        case badDimension
        /// The element count or byte size does not fit in 64-bit arithmetic.
        case sizeOverflow
        /// A tensor type code ggml does not define (or that mpq does not know).
        case unknownTensorType
        /// ne0 is not a multiple of the type's block size.
        case notBlockMultiple
        /// A tensor offset that is not a multiple of the alignment.
        case misalignedOffset
        /// A tensor's data extends past the end of the file.
        case dataPastEnd
        /// Two tensors' data ranges overlap.
        case overlappingTensors
        /// A tensor or importance entry of the wrong shape or content for its use.
        case badTensor
        /// Reading or writing the file failed at the operating-system level.
        case io
        /// A caller passed inconsistent data (e.g. a byte count that does not match the tensor).
        case invalidArgument
        /// The type has no (de)quantisation routine.
        case unsupportedType
    }

    /// The kind of problem.
    public var code: Code
    /// The file concerned (path), or "" when none.
    public var file: String
    /// What is wrong, naming the tensor or key when there is one.
    public var message: String

    /// An error of kind `code` about `file` (path or ""), with a one-line `message`.
    public init(_ code: Code, file: String, _ message: String) {
        self.code = code
        self.file = file
        self.message = message
    }

    /// "file: message" (or just the message when there is no file), on one line.
    public var description: String { file.isEmpty ? message : "\(file): \(message)" }
}
