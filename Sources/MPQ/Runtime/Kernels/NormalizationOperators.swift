/// Operators of this family, by op type.
let normalizationOperators: [String: OperatorFactory] = [:]
