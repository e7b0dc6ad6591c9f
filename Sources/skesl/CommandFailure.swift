// How every command fails: one convention. An error the user can act on (a bad file, a
// bad config, a store that does not verify) becomes a CommandFailure, which the argument
// parser prints once as "Error: <message>", without usage text or a trace, with exit code
// 1. Bad flags stay the parser's own errors (usage and the flag's name). Under several MPI
// ranks the failing rank ends the whole job, so no other rank hangs in a collective.
import ArgumentParser
import Foundation
import SKESLDistributed

struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
    init(_ error: Error) { description = "\(error)" }
}

/// Runs `body`; an error that is not the parser's becomes a CommandFailure.
func failingClearly<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e }
    catch let e as CommandFailure { throw e } catch { throw CommandFailure(error) }
}

/// Runs `body` with the world communicator; any error ends the whole job with a clear
/// message (never a hang of the other ranks, never a crash trace).
func withWorld(_ body: (Communicator) throws -> Void) throws {
    let comm = try Communicator.world()
    do {
        try body(comm)
    } catch {
        if comm.size > 1 { comm.abort(code: 1, message: "\(error)") }
        throw CommandFailure(error)
    }
    try Communicator.finalize()
}
