import Foundation
import MPQGraph
import MPQRuntime

/// Computes quantization parameters: activation ranges from calibration data
/// (streamed batch by batch through `RangeObserver`s), weight ranges from the weights —
/// `CandidateCalibration` (the one calibration path, shared with the searches) with one format per site.
public enum QuantizationCalibrator {
    /// Parameters for every site of `placement` in the format `config` gives it: weights from
    /// their values, activations from one FP32 pass over `data`; `progress` gets (batches done, total).
    public static func parameters(
        graph: Graph, placement: QuantizerPlacement, config: QuantizationConfig, data: CalibrationData,
        batchSize: Int = 16, options: SessionOptions = SessionOptions(),
        progress: ((_ done: Int, _ total: Int) -> Void)? = nil
    ) throws -> [String: QuantizationParameters] {
        let calibration = try CandidateCalibration(
            graph: graph, placement: placement, data: data, batchSize: batchSize, activationRange: config.activationRange,
            weightRange: config.weightRange, weightGranularity: config.weightGranularity, options: options, keepsOutputs: false,
            progress: progress)
        var result: [String: QuantizationParameters] = [:]
        for site in placement.weights + placement.activations where result[site.value] == nil {
            if site.role == .weight && graph.initializers[site.value] == nil { continue }
            result[site.value] = try calibration.parameters(for: site.value, format: config.format(for: site))
        }
        return result
    }

    /// Granularity of a weight: per-channel on its output-channel axis, groups along its reduction axis.
    static func weightGranularity(_ granularity: QuantizationConfig.WeightGranularity, site: QuantizerPlacement.Site,
                                  weight: Tensor) -> QuantizationGranularity {
        switch granularity {
        case .perTensor: return .perTensor
        case .perChannel: return site.channelAxis.map { .perChannel(axis: $0) } ?? .perTensor
        case .perGroup(let size):
            guard let axis = site.reductionAxis, weight.shape[axis] % size == 0 else {
                return site.channelAxis.map { .perChannel(axis: $0) } ?? .perTensor
            }
            return .perGroup(axis: axis, size: size)
        }
    }
}
