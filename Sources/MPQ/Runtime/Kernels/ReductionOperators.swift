/// Operators of this family, by op type.
let reductionOperators: [String: OperatorFactory] = [:]
