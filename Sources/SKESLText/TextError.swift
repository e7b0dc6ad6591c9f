// Errors of the text pipeline: each names the file (or input) and says how to fix it.

public struct TextError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
