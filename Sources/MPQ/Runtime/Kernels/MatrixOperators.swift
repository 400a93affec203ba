/// Operators of this family, by op type.
let matrixOperators: [String: OperatorFactory] = [:]
