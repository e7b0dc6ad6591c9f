// What `skesl extract` reads: a tree of audio files, each with optional siblings
// <stem>.txt (transcript) and <stem>.openface.csv (OpenFace 2.0 frames), and an optional
// labels.csv ("id,label,split") at the root. An utterance's id is its path below the root
// without the extension (VoxCeleb: "id10001/1zcIwhmdeo4/00001").
import Foundation
import SKESLAudio
import SKESLStore

/// Extensions libsndfile decodes itself; others go through ffmpeg.
let sndfileExtensions: Set<String> = ["wav", "flac", "ogg", "oga", "opus", "aiff", "aif", "aifc", "au", "snd", "caf", "w64", "rf64", "mp3"]
/// Containers decoded with ffmpeg when it is installed (VoxCeleb2 ships m4a).
let ffmpegExtensions: Set<String> = ["m4a", "mp4", "aac", "webm", "mkv", "mov", "avi", "wma", "amr", "3gp"]

public struct AudioInput: Sendable, Equatable {
    /// Path relative to the input root.
    public var relativePath: String
    public var id: String
    public var ext: String
}

/// Every audio file below `root`, sorted by relative path (the same on every rank).
public func listAudioFiles(root: String) throws -> [AudioInput] {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
        throw StoreError("\(root): not a directory of audio files")
    }
    guard let e = fm.enumerator(atPath: root) else { throw StoreError("\(root): cannot list the directory") }
    var out: [AudioInput] = []
    while let rel = e.nextObject() as? String {
        let ext = (rel as NSString).pathExtension.lowercased()
        guard sndfileExtensions.contains(ext) || ffmpegExtensions.contains(ext) else { continue }
        if (rel as NSString).lastPathComponent.hasPrefix(".") { continue }
        out.append(AudioInput(relativePath: rel, id: (rel as NSString).deletingPathExtension, ext: ext))
    }
    out.sort { $0.relativePath < $1.relativePath }
    var seen = Set<String>()
    for a in out where !seen.insert(a.id).inserted {
        throw StoreError("\(root): two audio files share the utterance id \"\(a.id)\" (different extensions); keep one")
    }
    return out
}

/// labels.csv: "id,label,split" lines (an optional header "id,...").
public func readLabels(_ path: String) throws -> [String: (Float, Split)] {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw StoreError("\(path): cannot read (\(error.localizedDescription))") }
    var labels: [String: (Float, Split)] = [:]
    for (ln, line) in text.split(whereSeparator: \.isNewline).enumerated() {
        let c = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if ln == 0 && c.first == "id" { continue }
        guard c.count == 3, let l = Float(c[1]), l.isFinite, let s = Split(name: c[2]) else {
            throw StoreError("\(path): line \(ln + 1) is not \"id,label,split\" with a finite label and split train/valid/test")
        }
        labels[c[0]] = (l, s)
    }
    return labels
}

/// Finds an executable on PATH.
public func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for d in path.split(separator: ":") {
        let p = "\(d)/\(name)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

/// Runs `/bin/sh -c command`, returning (status, stdout, stderr).
func runShell(_ command: String) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    // Read both pipes to the end before waiting, so a chatty child never blocks on a full pipe.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let done = DispatchSemaphore(value: 0)
    Thread { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); done.signal() }.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errBox.data, as: UTF8.self))
}

/// Quotes a path for /bin/sh.
func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// Decodes a file as librosa 0.9.1 would: libsndfile for what it reads (Python's soundfile),
/// otherwise ffmpeg to 16-bit PCM at the native rate and channels (what librosa's audioread
/// fallback gets from ffmpeg), then the same mono mix.
func decode(_ path: String, ext: String, ffmpeg: String?, scratch: String) throws -> DecodedAudio {
    if sndfileExtensions.contains(ext) { return try decodeAudioFile(path) }
    guard let ff = ffmpeg else {
        throw FeatureError.unsupported("\(path): .\(ext) needs ffmpeg to decode, and no ffmpeg is available (apt-get install ffmpeg, or give --ffmpeg PATH), or convert the files to WAV/FLAC")
    }
    let wav = scratch + "/decode-\(getpid()).wav"
    defer { try? FileManager.default.removeItem(atPath: wav) }
    let (status, _, err) = try runShell("\(shellQuote(ff)) -nostdin -v error -y -i \(shellQuote(path)) -vn -f wav -acodec pcm_s16le \(shellQuote(wav))")
    guard status == 0 else {
        throw FeatureError.unreadable("\(path): ffmpeg could not decode it (\(err.split(separator: "\n").last.map(String.init) ?? "exit \(status)"))")
    }
    return try decodeAudioFile(wav)
}
