// MPI failures as Swift errors. Every communicator uses MPI_ERRORS_RETURN, so a
// failing call comes back here with Open MPI's own explanation instead of
// killing the process from inside the library.
import COpenMPI
import CShim

public struct MPIError: Error, CustomStringConvertible, Equatable {
    /// The MPI function that failed, e.g. "MPI_Allreduce".
    public let call: String
    /// MPI's error code (0 is MPI_SUCCESS and never appears here).
    public let code: Int32
    /// MPI_Error_string of the code.
    public let message: String

    public var description: String { "\(call) failed (MPI error \(code)): \(message)" }

    /// Turns an MPI return code into a thrown error.
    @inline(__always)
    static func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
        if code != 0 { throw MPIError(call: call(), code: code, message: errorString(code)) }
    }

    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(skesl_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &buffer, &length) == 0 else { return "unknown MPI error" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Misuse of this layer that MPI itself would not catch (wrong sizes, a reducer
/// step that left gradients unmarked, ...).
public struct DistributedError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
