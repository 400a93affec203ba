/// Operators of this family, by op type.
let resizeOperators: [String: OperatorFactory] = [:]
