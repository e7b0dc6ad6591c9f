// Line charts as inline SVG for the run report: axes with "nice" ticks, grid, labels,
// legend, one polyline per series (split where a value is missing or not finite).
// Tick labels carry their exact value (data-v) and pixel position (data-px), so a reader
// (or a test) can map any polyline point back to data through the axis scale.
import Foundation

public struct ChartSeries {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public var dashed: Bool

    public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false) {
        self.name = name; self.points = points; self.dashed = dashed
    }
}

/// A linear or log10 axis mapping data values onto a pixel interval.
public struct ChartAxis {
    public var lo: Double, hi: Double       // data range shown
    public var log: Bool
    public var ticks: [Double]
    public var pixelLo: Double, pixelHi: Double   // pixel of lo, pixel of hi (hi < lo for y)

    public func pixel(_ v: Double) -> Double {
        let (a, b, x) = log ? (log10(lo), log10(hi), log10(v)) : (lo, hi, v)
        return b == a ? (pixelLo + pixelHi) / 2 : pixelLo + (x - a) / (b - a) * (pixelHi - pixelLo)
    }

    /// Axis over [minV, maxV]: nice linear ticks (1, 2, 5 x 10^k) widened to whole ticks, or
    /// decades (with 2 and 5 in between when the range is short) on a log axis.
    /// `minStep`: ticks at least this far apart (1 for counts such as epochs: no 1.5).
    public static func make(min minV: Double, max maxV: Double, log: Bool, pixelLo: Double, pixelHi: Double,
                            targetTicks: Int = 6, minStep: Double = 0) -> ChartAxis {
        if log {
            let a = floor(log10(minV)), b = max(ceil(log10(maxV)), a + 1)
            var ticks: [Double] = []
            let between: [Double] = (b - a) <= 2 ? [1, 2, 5] : [1]
            for e in stride(from: a, through: b, by: 1) {
                for m in between where m * pow(10, e) <= pow(10, b) * 1.0000001 { ticks.append(m * pow(10, e)) }
            }
            return ChartAxis(lo: pow(10, a), hi: pow(10, b), log: true, ticks: ticks, pixelLo: pixelLo, pixelHi: pixelHi)
        }
        var lo = minV, hi = maxV
        if hi - lo <= abs(hi) * 1e-12 {   // a constant: show a band around it
            let pad = lo == 0 ? 1 : abs(lo) * 0.1
            lo -= pad; hi += pad
        }
        let step = max(niceStep((hi - lo) / Double(max(1, targetTicks - 1))), minStep)
        let first = floor(lo / step + 1e-9) * step, last = ceil(hi / step - 1e-9) * step
        var ticks: [Double] = []
        var k = 0.0
        while first + k * step <= last + step * 1e-9 {
            let t = first + k * step
            ticks.append(abs(t) < step * 1e-9 ? 0 : t)
            k += 1
        }
        return ChartAxis(lo: first, hi: last, log: false, ticks: ticks, pixelLo: pixelLo, pixelHi: pixelHi)
    }

    /// The smallest of 1, 2, 5 x 10^k not below `raw`.
    static func niceStep(_ raw: Double) -> Double {
        let p = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * p >= raw * (1 - 1e-9) { return m * p }
        return 10 * p
    }

    /// Short tick text: "0.25", "1200", "40k", "1e-05".
    public func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        if log { return String(format: "%g", v) }
        let step = ticks.count > 1 ? ticks[1] - ticks[0] : abs(v)
        if abs(v) >= 10_000 && step >= 1000 {
            return String(format: "%gk", v / 1000)
        }
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        return String(format: "%.\(decimals)f", v)
    }
}

public struct LineChart {
    public var id: String
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [ChartSeries]
    public var logY = false
    public var note: String?
    /// The x values are whole numbers (epochs): whole-number ticks only.
    public var integerX = false
    public var width = 1000.0, height = 330.0

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    // Plot area margins: left (y labels), right, top (title, legend), bottom (x labels).
    static let margin = (left: 78.0, right: 20.0, top: 58.0, bottom: 52.0)

    public init(id: String, title: String, xLabel: String, yLabel: String, series: [ChartSeries],
                logY: Bool = false, note: String? = nil, integerX: Bool = false) {
        self.id = id; self.title = title; self.xLabel = xLabel; self.yLabel = yLabel
        self.series = series; self.logY = logY; self.note = note; self.integerX = integerX
    }

    /// The points a chart can draw (finite, and positive on a log axis).
    func drawable(_ p: (x: Double, y: Double)) -> Bool {
        p.x.isFinite && p.y.isFinite && (!logY || p.y > 0)
    }

    public func svg() -> String {
        let m = Self.margin
        let plotL = m.left, plotR = width - m.right, plotT = m.top, plotB = height - m.bottom
        let pts = series.flatMap { $0.points.filter(drawable) }
        var out = "<svg class=\"chart\" id=\"\(id)\" data-scale=\"\(logY ? "log" : "linear")\" "
            + "viewBox=\"0 0 \(svgNumber(width)) \(svgNumber(height))\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\">\n"
        out += "<title>\(htmlEscape(title))</title>\n"
        out += "<text class=\"chart-title\" x=\"\(svgNumber(plotL))\" y=\"22\">\(htmlEscape(title))</text>\n"
        guard !pts.isEmpty else {
            out += "<text class=\"empty\" x=\"\(svgNumber((plotL + plotR) / 2))\" y=\"\(svgNumber((plotT + plotB) / 2))\" text-anchor=\"middle\">no data logged</text>\n</svg>"
            return out
        }
        let xs = pts.map(\.x), ys = pts.map(\.y)
        let xAxis = ChartAxis.make(min: xs.min()!, max: xs.max()!, log: false, pixelLo: plotL, pixelHi: plotR, targetTicks: 9,
                                     minStep: integerX ? 1 : 0)
        let yAxis = ChartAxis.make(min: ys.min()!, max: ys.max()!, log: logY, pixelLo: plotB, pixelHi: plotT)

        // Grid and ticks.
        out += "<g class=\"grid\">\n"
        for t in yAxis.ticks {
            let y = yAxis.pixel(t)
            out += "<line x1=\"\(svgNumber(plotL))\" x2=\"\(svgNumber(plotR))\" y1=\"\(svgNumber(y))\" y2=\"\(svgNumber(y))\"/>\n"
        }
        for t in xAxis.ticks {
            let x = xAxis.pixel(t)
            out += "<line x1=\"\(svgNumber(x))\" x2=\"\(svgNumber(x))\" y1=\"\(svgNumber(plotT))\" y2=\"\(svgNumber(plotB))\"/>\n"
        }
        out += "</g>\n<g class=\"axes\">\n"
        out += "<rect x=\"\(svgNumber(plotL))\" y=\"\(svgNumber(plotT))\" width=\"\(svgNumber(plotR - plotL))\" height=\"\(svgNumber(plotB - plotT))\" fill=\"none\"/>\n"
        for t in yAxis.ticks {
            let y = yAxis.pixel(t)
            out += "<text class=\"tick y\" data-v=\"\(t)\" data-px=\"\(svgNumber(y))\" x=\"\(svgNumber(plotL - 7))\" y=\"\(svgNumber(y + 4))\" text-anchor=\"end\">\(yAxis.label(t))</text>\n"
        }
        for t in xAxis.ticks {
            let x = xAxis.pixel(t)
            out += "<text class=\"tick x\" data-v=\"\(t)\" data-px=\"\(svgNumber(x))\" x=\"\(svgNumber(x))\" y=\"\(svgNumber(plotB + 18))\" text-anchor=\"middle\">\(xAxis.label(t))</text>\n"
        }
        out += "<text class=\"axis-label\" x=\"\(svgNumber((plotL + plotR) / 2))\" y=\"\(svgNumber(height - 10))\" text-anchor=\"middle\">\(htmlEscape(xLabel))</text>\n"
        let midY = (plotT + plotB) / 2
        out += "<text class=\"axis-label\" x=\"16\" y=\"\(svgNumber(midY))\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(svgNumber(midY)))\">\(htmlEscape(yLabel))</text>\n"
        out += "</g>\n"

        // Series: one polyline per run of drawable points; markers when points are few.
        for (i, s) in series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            var runs: [[(x: Double, y: Double)]] = [[]]
            for p in s.points {
                if drawable(p) { runs[runs.count - 1].append(p) } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
            }
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            out += "<g class=\"series\" data-series=\"\(htmlEscape(s.name))\">\n"
            for run in runs where !run.isEmpty {
                let text = run.map { "\(svgNumber(xAxis.pixel($0.x))),\(svgNumber(yAxis.pixel($0.y)))" }.joined(separator: " ")
                out += "<polyline points=\"\(text)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>\n"
            }
            let drawn = s.points.filter(drawable)
            if drawn.count <= 60 {
                for p in drawn {
                    out += "<circle cx=\"\(svgNumber(xAxis.pixel(p.x)))\" cy=\"\(svgNumber(yAxis.pixel(p.y)))\" r=\"3\" fill=\"\(color)\"/>\n"
                }
            }
            out += "</g>\n"
        }

        // Legend, in a row above the plot.
        out += "<g class=\"legend\">\n"
        var lx = plotL
        for (i, s) in series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            out += "<line x1=\"\(svgNumber(lx))\" x2=\"\(svgNumber(lx + 24))\" y1=\"42\" y2=\"42\" stroke=\"\(color)\" stroke-width=\"3\"\(dash)/>\n"
            out += "<text x=\"\(svgNumber(lx + 30))\" y=\"46\">\(htmlEscape(s.name))</text>\n"
            lx += 30 + Double(s.name.count) * 7.5 + 24
        }
        if let note {
            out += "<text class=\"note\" x=\"\(svgNumber(plotR))\" y=\"22\" text-anchor=\"end\">\(htmlEscape(note))</text>\n"
        }
        out += "</g>\n</svg>"
        return out
    }
}

/// Pixel coordinates with 2 decimals (exact enough, compact).
func svgNumber(_ v: Double) -> String { String(format: "%.2f", v) }

/// Text for HTML/SVG content and attribute values.
func htmlEscape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(c)
        }
    }
    return out
}
