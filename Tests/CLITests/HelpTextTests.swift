// Every command's --help reads as written: the parser wraps paragraphs to 80 columns, so a
// discussion is written as paragraphs (one logical line each), and lines that it must not
// rewrap (lists, examples, indented) fit in 80 columns. A paragraph hard-wrapped at another
// width would be wrapped twice and break mid-phrase. Read from the parser's own dump of
// every command (--experimental-dump-help), so a new command is checked too.
import CLISupport
import Foundation
import XCTest

final class HelpTextTests: XCTestCase {
    struct Command: Decodable {
        var commandName: String
        var abstract: String?
        var discussion: String?
        var subcommands: [Command]?
    }
    struct Dump: Decodable { var command: Command }

    func testDiscussionsAreParagraphsAndIndentedLinesFit() throws {
        let h = try RunHarness("help")
        let r = try h.run(["--experimental-dump-help"])
        XCTAssertEqual(r.status, 0, r.err)
        let dump = try JSONDecoder().decode(Dump.self, from: Data(r.out.utf8))
        var seen = 0, problems: [String] = []
        func check(_ c: Command, _ path: String) {
            seen += 1
            let lines = (c.discussion ?? "").components(separatedBy: "\n")
            for (i, line) in lines.enumerated() where line.count > 80 {
                let next = i + 1 < lines.count ? lines[i + 1] : ""
                if line.hasPrefix(" ") {
                    problems.append("\(path): an indented line of \(line.count) columns is rewrapped to column 0: \(line)")
                } else if !next.trimmingCharacters(in: .whitespaces).isEmpty && !next.hasPrefix(" ") {
                    problems.append("\(path): a paragraph is hard-wrapped after \(line.count) columns: \(line) / \(next)")
                }
            }
            for s in c.subcommands ?? [] { check(s, path + " " + s.commandName) }
        }
        check(dump.command, "skesl")
        XCTAssertGreaterThan(seen, 15, "every command is in the dump")
        XCTAssertEqual(problems, [], problems.joined(separator: "\n"))
    }
}
