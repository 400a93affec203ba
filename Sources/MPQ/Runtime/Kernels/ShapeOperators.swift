/// Operators of this family, by op type.
let shapeOperators: [String: OperatorFactory] = [:]
