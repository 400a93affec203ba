import Foundation

/// A self-contained SVG line chart: several series (lines and/or point markers), labelled reference
/// points, and axes with "nice" ticks (1, 2 or 5 x 10^k steps, Heckbert's "Nice numbers for graph
/// labels", Graphics Gems 1990). Used for the Pareto fronts of the search methods.
public struct LinePlot: Sendable {
    /// One named series of points, drawn as a polyline, markers, or both.
    public struct Series: Sendable {
        /// Legend text.
        public var name: String
        /// Points in data coordinates, drawn in the given order.
        public var points: [(x: Double, y: Double)]
        /// SVG colour, e.g. "#1f77b4".
        public var color: String
        /// Whether the points are joined by a line; default true.
        public var drawsLine: Bool
        /// Whether each point gets a marker; default false.
        public var drawsMarkers: Bool

        /// A series; by default a line without markers.
        public init(name: String, points: [(x: Double, y: Double)], color: String, drawsLine: Bool = true, drawsMarkers: Bool = false) {
            self.name = name
            self.points = points
            self.color = color
            self.drawsLine = drawsLine
            self.drawsMarkers = drawsMarkers
        }
    }

    /// A point drawn as a diamond with a text label beside it.
    public struct LabelledPoint: Sendable {
        /// Horizontal position, data coordinates.
        public var x: Double
        /// Vertical position, data coordinates.
        public var y: Double
        /// Text drawn beside the point.
        public var label: String
        /// SVG colour of the diamond and label.
        public var color: String

        /// A labelled point at (x, y).
        public init(x: Double, y: Double, label: String, color: String) {
            self.x = x
            self.y = y
            self.label = label
            self.color = color
        }
    }

    /// Title above the chart.
    public var title: String
    /// Caption of the horizontal axis.
    public var xLabel: String
    /// Caption of the vertical axis.
    public var yLabel: String
    /// The series, drawn in order (later ones on top).
    public var series: [Series] = []
    /// Reference points drawn over the series.
    public var labelledPoints: [LabelledPoint] = []
    /// SVG width in pixels; default 760.
    public var width = 760.0
    /// SVG height in pixels; default 480.
    public var height = 480.0

    /// An empty chart with a title and axis captions; add `series` and `labelledPoints`.
    public init(title: String, xLabel: String, yLabel: String) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
    }

    /// Tick values covering [low, high] with about `count` nice steps.
    public static func ticks(_ low: Double, _ high: Double, count: Int = 6) -> [Double] {
        guard low.isFinite, high.isFinite else { return [] }
        var (low, high) = (low, high)
        if high - low < 1e-12 { low -= 0.5; high += 0.5 }
        let step = niceNumber((high - low) / Double(max(count - 1, 1)), round: true)
        let first = (low / step).rounded(.down) * step, last = (high / step).rounded(.up) * step
        return stride(from: first, through: last + step / 2, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
    }

    /// 1, 2, 5 or 10 times a power of ten near `x` (rounded, or the next above).
    static func niceNumber(_ x: Double, round: Bool) -> Double {
        let exponent = (log10(x)).rounded(.down), fraction = x / pow(10, exponent)
        let nice: Double
        if round {
            nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        } else {
            nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        }
        return nice * pow(10, exponent)
    }

    static func label(_ value: Double, step: Double) -> String {
        let decimals = max(0, min(6, Int((-log10(step)).rounded(.up))))
        return String(format: "%.\(decimals)f", value)
    }

    /// `text` with the characters XML and HTML reserve replaced by entities.
    package static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// The chart as an SVG document (non-finite points are left out).
    public func svg() -> String {
        let finite = { (p: (x: Double, y: Double)) in p.x.isFinite && p.y.isFinite }
        let all = series.flatMap { $0.points.filter(finite) } + labelledPoints.map { ($0.x, $0.y) }.filter(finite)
        let xTicks = Self.ticks(all.map(\.x).min() ?? 0, all.map(\.x).max() ?? 1)
        let yTicks = Self.ticks(all.map(\.y).min() ?? 0, all.map(\.y).max() ?? 1)
        let (x0, x1) = (xTicks.first ?? 0, xTicks.last ?? 1), (y0, y1) = (yTicks.first ?? 0, yTicks.last ?? 1)
        let left = 70.0, right = width - 170, top = 40.0, bottom = height - 55
        func px(_ x: Double) -> Double { left + (x - x0) / max(x1 - x0, 1e-12) * (right - left) }
        func py(_ y: Double) -> Double { bottom - (y - y0) / max(y1 - y0, 1e-12) * (bottom - top) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        var out = [##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(f(width))" height="\##(f(height))" viewBox="0 0 \##(f(width)) \##(f(height))" font-family="sans-serif" font-size="12">"##]
        out.append(##"<rect width="100%" height="100%" fill="white"/>"##)
        out.append(##"<text x="\##(f(width / 2))" y="22" text-anchor="middle" font-size="15">\##(Self.escape(title))</text>"##)
        let xStep = xTicks.count > 1 ? xTicks[1] - xTicks[0] : 1, yStep = yTicks.count > 1 ? yTicks[1] - yTicks[0] : 1
        for tick in xTicks {
            out.append(##"<line x1="\##(f(px(tick)))" y1="\##(f(top))" x2="\##(f(px(tick)))" y2="\##(f(bottom))" stroke="#e5e5e5"/>"##)
            out.append(##"<text x="\##(f(px(tick)))" y="\##(f(bottom + 18))" text-anchor="middle">\##(Self.label(tick, step: xStep))</text>"##)
        }
        for tick in yTicks {
            out.append(##"<line x1="\##(f(left))" y1="\##(f(py(tick)))" x2="\##(f(right))" y2="\##(f(py(tick)))" stroke="#e5e5e5"/>"##)
            out.append(##"<text x="\##(f(left - 8))" y="\##(f(py(tick) + 4))" text-anchor="end">\##(Self.label(tick, step: yStep))</text>"##)
        }
        out.append(##"<rect x="\##(f(left))" y="\##(f(top))" width="\##(f(right - left))" height="\##(f(bottom - top))" fill="none" stroke="#333"/>"##)
        out.append(##"<text x="\##(f((left + right) / 2))" y="\##(f(height - 12))" text-anchor="middle">\##(Self.escape(xLabel))</text>"##)
        out.append(##"<text transform="translate(18 \##(f((top + bottom) / 2))) rotate(-90)" text-anchor="middle">\##(Self.escape(yLabel))</text>"##)
        for entry in series {
            let points = entry.points.filter(finite)
            if entry.drawsLine, points.count > 1 {
                let path = points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                out.append(##"<polyline points="\##(path)" fill="none" stroke="\##(entry.color)" stroke-width="1.5"/>"##)
            }
            if entry.drawsMarkers {
                for point in points {
                    out.append(##"<circle cx="\##(f(px(point.x)))" cy="\##(f(py(point.y)))" r="4" fill="\##(entry.color)"><title>\##(Self.escape(entry.name)): (\##(String(format: "%.4g", point.x)), \##(String(format: "%.4g", point.y)))</title></circle>"##)
                }
            }
        }
        for point in labelledPoints where point.x.isFinite && point.y.isFinite {
            let (x, y) = (px(point.x), py(point.y))
            out.append(##"<path d="M \##(f(x)) \##(f(y - 6)) L \##(f(x + 6)) \##(f(y)) L \##(f(x)) \##(f(y + 6)) L \##(f(x - 6)) \##(f(y)) Z" fill="none" stroke="\##(point.color)" stroke-width="2"/>"##)
            out.append(##"<text x="\##(f(x + 9))" y="\##(f(y - 7))" fill="\##(point.color)">\##(Self.escape(point.label))</text>"##)
        }
        // Legend.
        var legendY = top + 10
        for entry in series {
            if entry.drawsLine {
                out.append(##"<line x1="\##(f(right + 15))" y1="\##(f(legendY))" x2="\##(f(right + 35))" y2="\##(f(legendY))" stroke="\##(entry.color)" stroke-width="1.5"/>"##)
            }
            if entry.drawsMarkers { out.append(##"<circle cx="\##(f(right + 25))" cy="\##(f(legendY))" r="4" fill="\##(entry.color)"/>"##) }
            out.append(##"<text x="\##(f(right + 42))" y="\##(f(legendY + 4))">\##(Self.escape(entry.name))</text>"##)
            legendY += 20
        }
        if !labelledPoints.isEmpty {
            out.append(##"<path d="M \##(f(right + 25)) \##(f(legendY - 6)) L \##(f(right + 31)) \##(f(legendY)) L \##(f(right + 25)) \##(f(legendY + 6)) L \##(f(right + 19)) \##(f(legendY)) Z" fill="none" stroke="#555" stroke-width="2"/>"##)
            out.append(##"<text x="\##(f(right + 42))" y="\##(f(legendY + 4))">reference points</text>"##)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
