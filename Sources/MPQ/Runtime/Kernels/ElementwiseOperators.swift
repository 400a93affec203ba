/// Operators of this family, by op type.
let elementwiseOperators: [String: OperatorFactory] = [:]
