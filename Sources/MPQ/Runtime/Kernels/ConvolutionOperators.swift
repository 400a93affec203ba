/// Operators of this family, by op type.
let convolutionOperators: [String: OperatorFactory] = [:]
