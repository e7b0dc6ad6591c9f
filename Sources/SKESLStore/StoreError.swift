// Errors of the store: each names the file and, for a sample, the row, the global
// sample id and the utterance id, and says what to do about it.

public struct StoreError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where a sample lives and what is wrong with it.
public struct SampleProblem: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let row: Int
    public let globalId: Int64
    public let utteranceId: String?
    public let reason: String

    public init(file: String, row: Int, globalId: Int64, utteranceId: String?, reason: String) {
        self.file = file; self.row = row; self.globalId = globalId
        self.utteranceId = utteranceId; self.reason = reason
    }

    public var description: String {
        let u = utteranceId.map { " (utterance \"\($0)\")" } ?? ""
        return "\(file): sample at row \(row), global id \(globalId)\(u): \(reason). Fix or re-import the sample, or pass --skip-bad-samples to skip such samples and count them"
    }
}
