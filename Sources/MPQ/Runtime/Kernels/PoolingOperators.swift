/// Operators of this family, by op type.
let poolingOperators: [String: OperatorFactory] = [:]
