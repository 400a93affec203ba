import Foundation
import Testing
@testable import MPQ
@testable import MPQGraph
@testable import MPQLLM
@testable import MPQQuantization
@testable import MPQReports
@testable import MPQRuntime
@testable import MPQSearch

/// A small conv net with a residual Add, a Transpose between two convs and two outputs:
/// x -> c1 -> Relu r1 -> c2 -> Add(r1, c2) a -> c4 -> z; a -> Transpose t -> c3 -> y.
func residualTestGraph(seed: UInt64 = 7) -> Graph {
    var rng = SeededGenerator(seed: seed)
    let initializers: [String: Tensor] = [
        "w1": .random([8, 3, 3, 3], in: -0.5...0.5, using: &rng), "b1": .random([8], in: -0.1...0.1, using: &rng),
        "w2": .random([8, 8, 1, 1], in: -0.5...0.5, using: &rng),
        "w3": .random([4, 8, 1, 1], in: -0.5...0.5, using: &rng),
        "w4": .random([4, 8, 1, 1], in: -0.5...0.5, using: &rng),
    ]
    let nodes = [
        Node(name: "c1", opType: "Conv", inputs: ["x", "w1", "b1"], outputs: ["c1o"], attributes: ["pads": .ints([1, 1, 1, 1])]),
        Node(name: "r1", opType: "Relu", inputs: ["c1o"], outputs: ["r1o"]),
        Node(name: "c2", opType: "Conv", inputs: ["r1o", "w2"], outputs: ["c2o"]),
        Node(name: "add", opType: "Add", inputs: ["r1o", "c2o"], outputs: ["a"]),
        Node(name: "t", opType: "Transpose", inputs: ["a"], outputs: ["t"], attributes: ["perm": .ints([0, 1, 3, 2])]),
        Node(name: "c3", opType: "Conv", inputs: ["t", "w3"], outputs: ["y"]),
        Node(name: "c4", opType: "Conv", inputs: ["a", "w4"], outputs: ["z"]),
    ]
    return Graph(name: "residual", nodes: nodes,
                 inputs: [ValueInfo(name: "x", dtype: .float32, shape: [1, 3, 8, 8].map { .fixed($0) })],
                 outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil), ValueInfo(name: "z", dtype: .float32, shape: nil)],
                 initializers: initializers, opset: 17)
}

@Suite struct QuantizerGroupTests {
    func group(_ groups: QuantizerGroups, containing value: String) throws -> QuantizerGroups.Group {
        try #require(groups.groupOfValue[value].map { groups.groups[$0] }, "no group holds \(value)")
    }

    @Test func residualAndShapeOnlyOpsJoinGroups() throws {
        let graph = residualTestGraph()
        let groups = try QuantizerGroups(graph: graph, placement: QuantizerPlacement(graph: graph))
        #expect(groups.groups.map(\.name) == ["c1", "input x", "c2", "c3", "output y", "output z"])
        // The model input is its own group, so the first conv's group holds only its weight.
        #expect(try group(groups, containing: "x").sites.map(\.value) == ["x"])
        #expect(try group(groups, containing: "w1").sites.map(\.value) == ["w1"])
        // Residual operands share a group with the conv that reads one of them.
        #expect(Set(try group(groups, containing: "w2").sites.map(\.value)) == ["r1o", "w2", "c2o"])
        // The Transpose is looked through: both convs reading the Add's output are one group.
        let tail = try group(groups, containing: "w3")
        #expect(Set(tail.sites.map(\.value)) == ["a", "t", "w3", "w4"])
        #expect(tail.computeNodes == ["c3", "c4"])
        #expect(try group(groups, containing: "y").opTypes == ["Output"])
    }

    @Test func sharedValuesFromTheProfileJoinGroups() throws {
        let graph = residualTestGraph()
        let groups = try QuantizerGroups(graph: graph, placement: QuantizerPlacement(graph: graph), shared: [["y", "z"]])
        #expect(Set(try group(groups, containing: "y").sites.map(\.value)) == ["y", "z"])
        #expect(throws: MPQError.self) {
            try QuantizerGroups(graph: graph, placement: QuantizerPlacement(graph: graph), shared: [["y", "nothing"]])
        }
    }

    @Test func mobileNetGroups() throws {
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/mobilenetv2.onnx").path).graph
        let groups = try QuantizerGroups(graph: graph, placement: QuantizerPlacement(graph: graph))
        // 52 convs + the classifier, the model input and the logits output.
        #expect(groups.groups.count == 55)
        #expect(groups.groups.reduce(0) { $0 + $1.sites.count } == 117)
        let first = try group(groups, containing: "onnx::Conv_538")
        #expect(first.name == "/features/features.0/features.0.0/Conv" && first.sites.map(\.value) == ["onnx::Conv_538"])
        #expect(try group(groups, containing: "input").sites.map(\.value) == ["input"])
        // Block 3 (stride 1, 24 channels) adds its input to its projection: both operands join block 3's first conv.
        let block = try group(groups, containing: "onnx::Conv_556")
        #expect(Set(block.activations.map(\.value)) == ["/features/features.2/conv/conv.2/Conv_output_0",
                                                        "/features/features.3/conv/conv.2/Conv_output_0"])
        #expect(block.computeNodes == ["/features/features.3/conv/conv.0/conv.0.0/Conv"])
        let classifier = try group(groups, containing: "classifier.1.weight")
        #expect(Set(classifier.sites.map(\.value)) == ["/Flatten_output_0", "classifier.1.weight"])
        #expect(classifier.opTypes == ["Gemm"])
        #expect(try group(groups, containing: "logits").name == "output logits")
    }

    @Test func miniLMGroups() throws {
        let graph = try Model(contentsOf: fixturesFolder.appendingPathComponent("models/all-MiniLM-L6-v2.onnx").path).graph
        let groups = try QuantizerGroups(graph: graph, placement: QuantizerPlacement(graph: graph))
        // Per layer: QKV (one input, three weights), two attention MatMuls, output dense, intermediate, output;
        // plus the output. The skip connections' sums go to LayerNormalization (float): their operands,
        // the embeddings' sum and the projections' outputs, carry no quantizers.
        #expect(groups.groups.count == 6 * 6 + 1)
        let sites = Set(groups.groups.flatMap { $0.sites.map(\.value) })
        #expect(!sites.contains { $0.hasSuffix("dense/Add_output_0") })
        #expect(!sites.contains("/m/embeddings/Add_output_0"))
        let qkv = try group(groups, containing: "onnx::MatMul_886")
        #expect(qkv.weights.count == 3 && qkv.computeNodes.count == 3)
        #expect(qkv.name == "/m/encoder/layer.0/attention/self/query/MatMul")
        let scores = groups.groups.filter { $0.name == "/m/encoder/layer.0/attention/self/MatMul" }
        #expect(scores.count == 1 && scores.first?.opTypes == ["MatMulActivations"] && scores.first?.weights.isEmpty == true)
        #expect(groups.groups.filter { $0.opTypes == ["MatMulActivations"] }.count == 12)
        #expect(groups.groups.last?.name == "output last_hidden_state")
    }
}

@Suite struct HardwareProfileTests {
    @Test func shippedProfilesMatchTheFilesInProfiles() throws {
        for (name, text) in HardwareProfile.builtIn {
            let file = try String(contentsOf: repositoryRoot.appendingPathComponent("profiles/\(name).json"), encoding: .utf8)
            #expect(text + "\n" == file, "profiles/\(name).json differs from the built-in copy")
            _ = try HardwareProfile(json: text)
        }
        let avx2 = try HardwareProfile.load("cpu-avx2")
        #expect(avx2.candidates.map(\.name) == ["w7a8", "fp32"])
        #expect(avx2.candidates[0].weights == .integer(bits: 7, signed: true, symmetric: true))
        #expect(avx2.candidates[0].activations == .integer(bits: 8, signed: false, symmetric: false))
    }

    @Test func groupWithoutAllowedCandidateIsNamed() throws {
        let graph = residualTestGraph()
        let groups = try QuantizerGroups(graph: graph, placement: QuantizerPlacement(graph: graph))
        let profile = try HardwareProfile(json: #"{"name": "tiny", "candidates": ["w8a8", "w4a8"], "op_types": {"Conv": ["w8a8"], "Output": ["w4a8"]}}"#)
        #expect(try profile.allowedCandidates(for: groups.groups[0]).map(\.name) == ["w8a8"])
        let strict = try HardwareProfile(json: #"{"name": "strict", "candidates": ["w8a8", "w4a8"], "op_types": {"Input": []}}"#)
        do {
            _ = try strict.allowedCandidates(for: groups.groups[1])
            Issue.record("expected an error for the input group")
        } catch let error as MPQError {
            #expect("\(error)".contains("input x") && "\(error)".contains("strict"), "\(error)")
        }
    }

    @Test func badProfilesAndCandidatesAreRejected() throws {
        #expect(throws: MPQError.self) { try HardwareProfile(json: #"{"candidates": []}"#) }
        #expect(throws: MPQError.self) { try HardwareProfile(json: #"{"candidates": ["w8a8"], "op_types": {"Conv": ["w4a8"]}}"#) }
        #expect(throws: MPQError.self) { try HardwareProfile(json: #"{"candidates": ["w8a8"], "cost": "latency"}"#) }
        // A misspelt key is an error, not silently ignored.
        #expect(throws: MPQError.self) { try HardwareProfile(json: #"{"candidates": ["w8a8"], "op_type": {"Conv": ["w8a8"]}}"#) }
        #expect(throws: MPQError.self) { try Candidate(parsing: "w8") }
        #expect(throws: MPQError.self) { try HardwareProfile.load("default").restricted(to: ["w2a2"]) }
        #expect(try Candidate(parsing: "W4A8").isMorePrecise(than: Candidate(parsing: "w4a4")))
        // Equal bit products: more bits in total is more precise.
        #expect(try !Candidate(parsing: "w8a8").isMorePrecise(than: Candidate(parsing: "w4a16")))
        #expect(try !Candidate(parsing: "w8a8").isMorePrecise(than: Candidate(parsing: "w8a8")))
    }

    @Test func costsFollowTheProfile() throws {
        let graph = residualTestGraph()
        let groups = try QuantizerGroups(graph: graph, placement: QuantizerPlacement(graph: graph))
        let candidates = [[try Candidate(parsing: "w8a8"), try Candidate(parsing: "w4a8")]]
        let all = Array(repeating: candidates[0], count: groups.groups.count)
        let bops = try CostModel(graph: graph, groups: groups, candidates: all, profile: try HardwareProfile(json: #"{"candidates": ["w8a8", "w4a8"]}"#))
        // MACs: c1 64 x 8 x 27, c2/c3/c4 64 x (8 or 4) x 8; every value 8-bit.
        let firstMACs: Double = 64 * 8 * 27, otherMACs: Double = 64 * 8 * 8 + 2 * 64 * 4 * 8
        let uniform: Double = (firstMACs + otherMACs) * 64
        #expect(bops.cost([0, 0, 0, 0, 0, 0]) == uniform)
        // c1's weights at 4 bits halve its BOPs only.
        let halved: Double = uniform - firstMACs * 32
        #expect(bops.cost([1, 0, 0, 0, 0, 0]) == halved)
        let memory = try CostModel(graph: graph, groups: groups, candidates: all,
                                   profile: try HardwareProfile(json: #"{"candidates": ["w8a8", "w4a8"], "cost": "memory"}"#))
        #expect(memory.cost([0, 0, 0, 0, 0, 0]) == Double(8 * 27 + 64 + 32 + 32))
        let latency = try CostModel(graph: graph, groups: groups, candidates: all, profile: try HardwareProfile(json:
            #"{"candidates": ["w8a8", "w4a8"], "cost": "latency", "latency_ms": {"Conv": {"w8a8": 1, "w4a8": 0.5}, "c1": {"w8a8": 3, "w4a8": 2}}}"#))
        #expect(latency.cost([0, 0, 0, 0, 0, 0]) == 3 + 1 + 2)
        #expect(latency.cost([1, 0, 0, 1, 0, 0]) == 2 + 1 + 1)
    }
}
