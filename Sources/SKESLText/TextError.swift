// Errors of the text pipeline: each names the file (or input) and says how to fix it.

public struct TextError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Lines as Python's text mode reads them (universal newlines: \n, \r\n and \r end a
/// line); a final line break does not start an empty last line.
func universalLines(_ text: String) -> [String] {
    var lines: [String] = []
    var cur = String.UnicodeScalarView()
    var it = text.unicodeScalars.makeIterator()
    var pendingCR = false
    while let c = it.next() {
        if pendingCR {
            pendingCR = false
            if c == "\n" { continue }
        }
        if c == "\n" || c == "\r" {
            lines.append(String(cur)); cur = String.UnicodeScalarView()
            pendingCR = c == "\r"
        } else {
            cur.append(c)
        }
    }
    if !cur.isEmpty { lines.append(String(cur)) }
    return lines
}
