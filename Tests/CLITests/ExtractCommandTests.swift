// `skesl extract` through the binary: 2 ranks on a small tree of WAV files (tones and chirps
// of several rates and lengths, stereo and mono, plus an unreadable, a silent and an
// untranscribed file). One run is killed mid-chunk on rank 1 (SKESL_FAULT_EXTRACT_KILL_AFTER);
// rerunning the same command completes it, and the store equals an uninterrupted run's.
import Foundation
import SKESLReporting
import SKESLHDF5
import XCTest
import CLISupport

/// A 16-bit PCM WAV file (little-endian RIFF).
func writeWAV(_ path: String, samples: [[Float]], rate: Int) throws {
    let channels = samples.count, n = samples[0].count
    var d = Data()
    func u32(_ v: Int) { var x = UInt32(v).littleEndian; d.append(Data(bytes: &x, count: 4)) }
    func u16(_ v: Int) { var x = UInt16(v).littleEndian; d.append(Data(bytes: &x, count: 2)) }
    d.append(contentsOf: Array("RIFF".utf8)); u32(36 + n * channels * 2); d.append(contentsOf: Array("WAVE".utf8))
    d.append(contentsOf: Array("fmt ".utf8)); u32(16); u16(1); u16(channels); u32(rate); u32(rate * channels * 2); u16(channels * 2); u16(16)
    d.append(contentsOf: Array("data".utf8)); u32(n * channels * 2)
    for i in 0..<n { for c in 0..<channels { u16(Int(UInt16(bitPattern: Int16(max(-32768, min(32767, (samples[c][i] * 32767).rounded())))))) } }
    try d.write(to: URL(fileURLWithPath: path))
}

final class ExtractCommandTests: XCTestCase {
    /// The corpus: 9 good utterances in two speaker folders, and 3 bad files.
    func makeCorpus(_ root: String) throws {
        let fm = FileManager.default
        for d in ["spk1", "spk2"] { try fm.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
        let rates = [8000, 16000, 22050, 44100, 48000]
        for i in 0..<9 {
            let rate = rates[i % rates.count]
            let secs = 0.4 + 0.25 * Double(i)
            let n = Int(Double(rate) * secs)
            let f0 = 110.0 * Double(i + 1)
            var x = [Float](repeating: 0, count: n)
            for t in 0..<n {
                let tt = Double(t) / Double(rate)
                x[t] = Float(0.3 * sin(2 * .pi * (f0 * tt + 200 * tt * tt)) + 0.1 * sin(2 * .pi * 3 * f0 * tt))
            }
            let id = "spk\(i % 2 + 1)/utt\(i)"
            try writeWAV(root + "/" + id + ".wav", samples: i == 4 ? [x, x.map { -0.5 * $0 }] : [x], rate: rate)
            try "utterance \(i) was great".write(toFile: root + "/" + id + ".txt", atomically: true, encoding: .utf8)
        }
        try Data("RIFF....WAVEjunk".utf8).write(to: URL(fileURLWithPath: root + "/spk1/broken.wav"))
        try "broken".write(toFile: root + "/spk1/broken.txt", atomically: true, encoding: .utf8)
        try writeWAV(root + "/spk2/silent.wav", samples: [[Float](repeating: 0, count: 8000)], rate: 16000)
        try "silence".write(toFile: root + "/spk2/silent.txt", atomically: true, encoding: .utf8)
        try writeWAV(root + "/spk2/untranscribed.wav", samples: [(0..<8000).map { Float(sin(Double($0) * 0.05)) * 0.2 }], rate: 16000)
    }

    /// Everything a store holds per sample, shard by shard.
    func contents(_ dir: String) throws -> [String] {
        let m = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))) as! [String: Any]
        var out = ["total \(m["total_samples"] ?? m["totalSamples"] ?? "?")"]
        for s in m["shards"] as! [[String: Any]] {
            let f = try H5File.open(dir + "/" + (s["file"] as! String))
            let ids = try f.readStrings("utterance_id"), texts = try f.readStrings("transcript")
            let (audio, shape) = try f.read("audio", as: Float.self)
            let (alen, _) = try f.read("audio_length", as: Int32.self)
            let (vlen, _) = try f.read("video_length", as: Int32.self)
            let index: Int32 = try f.attribute("shard_index"), offset: Int64 = try f.attribute("global_offset")
            out.append("\(s["file"]!) samples \(s["samples"]!) index \(index) offset \(offset) shape \(shape)")
            for r in 0..<ids.count {
                let row = Array(audio[(r * shape[1] * shape[2])..<((r + 1) * shape[1] * shape[2])])
                out.append("\(ids[r]) | \(texts[r]) | \(alen[r]) \(vlen[r]) | \(row.map { $0.bitPattern })")
            }
        }
        return out
    }

    func testTwoRanksKilledMidRunResumeToTheSameStore() throws {
        let h = try RunHarness("extract")
        let corpus = h.dir + "/corpus"
        try makeCorpus(corpus)
        let args = ["extract", "--input", corpus, "--files-per-shard", "2", "--audio-frames", "40", "--video-frames", "3", "--video-dim", "5"]

        let whole = try h.run(args + ["--out", h.dir + "/whole"], np: 2)
        XCTAssertEqual(whole.status, 0, whole.err)
        XCTAssertTrue(whole.out.contains("extract: 9 samples from 12 files in 5 shards on 2 rank(s)"), whole.out)
        XCTAssertTrue(whole.out.contains("bad files: 3 (no-transcript 1, silent 1, unreadable 1)"), whole.out)
        XCTAssertTrue(whole.err.contains("files/s, ETA"), whole.err)

        // Rank 1 kills itself after 3 files: one chunk of it is done, the next half written.
        let killed = try h.run(args + ["--out", h.dir + "/resumed"], np: 2,
                               environment: ["SKESL_FAULT_EXTRACT_KILL_AFTER": "3", "SKESL_FAULT_KILL_RANK": "1"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertTrue(killed.err.contains("rank 1: SKESL_FAULT_EXTRACT_KILL_AFTER=3: killing this rank"), killed.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/resumed/manifest.json"), "no manifest before every shard is in")
        let work = try FileManager.default.contentsOfDirectory(atPath: h.dir + "/resumed/.extract")
        XCTAssertTrue(work.contains("chunk-000001"), "\(work)")

        let resumed = try h.run(args + ["--out", h.dir + "/resumed"], np: 2)
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("resuming the unfinished extraction"), resumed.err)
        XCTAssertTrue(resumed.err.contains("done before"), resumed.err)
        XCTAssertEqual(try contents(h.dir + "/resumed"), try contents(h.dir + "/whole"))
        let verify = try h.run(["store", "verify", h.dir + "/resumed"])
        XCTAssertEqual(verify.status, 0, verify.out + verify.err)

        // The report names each bad file and its reason.
        let report = try String(contentsOfFile: h.dir + "/resumed/extract-report.json", encoding: .utf8)
        for part in ["spk1/broken.wav", "\"unreadable\"", "spk2/silent.wav", "\"silent\"", "spk2/untranscribed.wav", "\"no-transcript\""] {
            XCTAssertTrue(report.contains(part), "\(part) missing from:\n\(report)")
        }
        // A second run over a finished store refuses; --strict stops at the first bad file.
        let again = try h.run(args + ["--out", h.dir + "/whole"])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.err.contains("a store exists there already"), again.err)
        let strict = try h.run(args + ["--out", h.dir + "/strict", "--strict"])
        XCTAssertNotEqual(strict.status, 0)
        XCTAssertTrue(strict.err.contains("broken.wav") && strict.err.contains("--strict"), strict.err)
    }

    func testASRCommandAndEmptyTranscripts() throws {
        let h = try RunHarness("extract-asr")
        let corpus = h.dir + "/corpus"
        try FileManager.default.createDirectory(atPath: corpus, withIntermediateDirectories: true)
        for (i, rate) in [16000, 22050, 8000].enumerated() {
            try writeWAV(corpus + "/u\(i).wav", samples: [(0..<rate).map { Float(0.2 * sin(Double($0) * 0.03 * Double(i + 1))) }], rate: rate)
        }
        // The "ASR" prints the file's name, except for u1, whose transcript comes out empty.
        let asr = h.dir + "/asr.sh"
        try "#!/bin/sh\ncase \"$1\" in *u1.wav) echo ;; *) basename \"$1\" .wav ;; esac\n".write(toFile: asr, atomically: true, encoding: .utf8)
        chmod(asr, 0o755)
        let r = try h.run(["extract", "--input", corpus, "--out", h.dir + "/store", "--audio-frames", "40", "--video-frames", "3",
                           "--video-dim", "5", "--asr-command", asr + " {audio}"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("2 samples from 3 files") && r.out.contains("empty-transcript 1"), r.out)
        let rows = try contents(h.dir + "/store")
        XCTAssertTrue(rows.contains { $0.hasPrefix("u0 | u0 | 40 0 |") }, rows.joined(separator: "\n"))
        XCTAssertTrue(rows.contains { $0.hasPrefix("u2 | u2 |") })
    }

    func testOpenFaceAndLabels() throws {
        let h = try RunHarness("extract-face")
        let corpus = h.dir + "/corpus"
        try FileManager.default.createDirectory(atPath: corpus, withIntermediateDirectories: true)
        var labels = "id,label,split\n"
        for i in 0..<4 {
            try writeWAV(corpus + "/v\(i).wav", samples: [(0..<12000).map { Float(0.3 * sin(Double($0) * 0.02 * Double(i + 1))) }], rate: 16000)
            try "clip \(i)".write(toFile: corpus + "/v\(i).txt", atomically: true, encoding: .utf8)
            // OpenFace 2.0 layout: frame, face_id, timestamp, confidence, success, then features.
            var csv = "frame, face_id, timestamp, confidence, success, AU01_r, AU02_r, pose_Rx\n"
            for f in 0..<(2 + i) { csv += "\(f + 1), 0, \(Double(f) * 0.04), 0.98, 1, \(Double(i) + 0.5), \(f), -1.25\n" }
            if i != 3 { try csv.write(toFile: corpus + "/v\(i).openface.csv", atomically: true, encoding: .utf8) }
            labels += "v\(i),\(Double(i) - 1.5),\(["train", "valid", "test", "train"][i])\n"
        }
        try labels.write(toFile: corpus + "/labels.csv", atomically: true, encoding: .utf8)
        let r = try h.run(["extract", "--input", corpus, "--out", h.dir + "/store", "--audio-frames", "20", "--video-frames", "4"])
        XCTAssertEqual(r.status, 0, r.err)
        // v3 has no OpenFace CSV while the others do: listed and skipped.
        XCTAssertTrue(r.out.contains("3 samples from 4 files") && r.out.contains("no-openface 1"), r.out)
        let m = try String(contentsOfFile: h.dir + "/store/manifest.json", encoding: .utf8)
        XCTAssertTrue(m.contains("\"train\" : 1") && m.contains("\"valid\" : 1") && m.contains("\"test\" : 1"), m)
        let f = try H5File.open(h.dir + "/store/shard-00000.h5")
        let (video, shape) = try f.read("video", as: Float.self)
        XCTAssertEqual(shape, [3, 4, 3])
        let (vlen, _) = try f.read("video_length", as: Int32.self)
        XCTAssertEqual(vlen, [2, 3, 4])
        // v1, frame 2: AU01_r 1.5, AU02_r 2, pose_Rx -1.25; v0's padding frames are zero.
        XCTAssertEqual(Array(video[(12 + 2 * 3)..<(12 + 3 * 3)]), [1.5, 2, -1.25])
        XCTAssertEqual(Array(video[(2 * 3)..<(4 * 3)]), [Float](repeating: 0, count: 6))
        let (label, _) = try f.read("label", as: Float.self)
        XCTAssertEqual(label, [-1.5, -0.5, 0.5])
        let v = try h.run(["store", "verify", h.dir + "/store"])
        XCTAssertEqual(v.status, 0, v.out + v.err)
    }

    func testContainersNeedingFFmpegAreListedWhenItIsMissing() throws {
        let h = try RunHarness("extract-noffmpeg")
        let corpus = h.dir + "/corpus"
        try FileManager.default.createDirectory(atPath: corpus, withIntermediateDirectories: true)
        try writeWAV(corpus + "/a.wav", samples: [(0..<8000).map { Float(0.3 * sin(Double($0) * 0.05)) }], rate: 16000)
        try Data(repeating: 0, count: 64).write(to: URL(fileURLWithPath: corpus + "/b.m4a"))
        for id in ["a", "b"] { try "words".write(toFile: corpus + "/\(id).txt", atomically: true, encoding: .utf8) }
        // No ffmpeg, whatever the machine has installed.
        let r = try h.run(["extract", "--input", corpus, "--out", h.dir + "/store", "--audio-frames", "20", "--video-frames", "2",
                           "--video-dim", "3", "--ffmpeg", "none"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("warning: no ffmpeg (none on PATH, or --ffmpeg none), so .m4a files (e.g. b.m4a) will be listed as unsupported"), r.err)
        XCTAssertTrue(r.out.contains("1 samples from 2 files") && r.out.contains("unsupported 1"), r.out)
        let report = try String(contentsOfFile: h.dir + "/store/extract-report.json", encoding: .utf8)
        XCTAssertTrue(report.contains(".m4a needs ffmpeg to decode, and no ffmpeg is available (apt-get install ffmpeg, or give --ffmpeg PATH)"), report)
    }

    /// VoxCeleb2 ships AAC in MP4 (.m4a), which libsndfile cannot read: extract decodes it
    /// with ffmpeg as librosa 0.9.1's audioread fallback does. The store's features equal
    /// the reference's on a recorded-speech clip (scripts/make_m4a_fixture.py).
    func testM4AThroughFFmpegMatchesLibrosa() throws {
        guard let ffmpeg = ["/usr/bin/ffmpeg", "/usr/local/bin/ffmpeg"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("ffmpeg is not installed (scripts/setup installs it)")
        }
        let h = try RunHarness("extract-m4a")
        let corpus = h.dir + "/corpus/id10001"
        try FileManager.default.createDirectory(atPath: corpus, withIntermediateDirectories: true)
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/audio"
        try FileManager.default.copyItem(atPath: fixtures + "/speech.m4a", toPath: corpus + "/00001.m4a")
        try "front right".write(toFile: corpus + "/00001.txt", atomically: true, encoding: .utf8)
        let r = try h.run(["extract", "--input", h.dir + "/corpus", "--out", h.dir + "/store", "--audio-frames", "80",
                           "--video-frames", "2", "--video-dim", "3", "--ffmpeg", ffmpeg])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("1 samples from 1 files"), r.out)
        let ref = try H5File.open(fixtures + "/librosa_m4a.h5")
        let (want, wantShape) = try ref.read("features", as: Float.self)
        let f = try H5File.open(h.dir + "/store/shard-00000.h5")
        let (got, shape) = try f.read("audio", as: Float.self)
        let (alen, _) = try f.read("audio_length", as: Int32.self)
        XCTAssertEqual(shape, [1, 80, 33])
        XCTAssertEqual(Int(alen[0]), wantShape[0], "frames of librosa.load's signal")
        var zcr = 0, mfcc: Float = 0, chroma: Float = 0
        for t in 0..<min(Int(alen[0]), wantShape[0]) {
            let o = t * 33
            if got[o] != want[o] { zcr += 1 }
            for k in 1...20 { mfcc = max(mfcc, abs(got[o + k] - want[o + k])) }
            for k in 21..<33 { chroma = max(chroma, abs(got[o + k] - want[o + k])) }
        }
        print("m4a parity: zcr mismatches \(zcr)/\(wantShape[0]), mfcc max|diff| \(mfcc) dB, chroma max|diff| \(chroma)")
        XCTAssertEqual(zcr, 0); XCTAssertLessThanOrEqual(mfcc, 1e-3); XCTAssertLessThanOrEqual(chroma, 1e-4)
        XCTAssertTrue(got[(Int(alen[0]) * 33)...].allSatisfy { $0 == 0 }, "padding frames are zero")
    }

    func testKilledWhilePlacingShardsResumes() throws {
        let h = try RunHarness("extract-placing")
        let corpus = h.dir + "/corpus"
        try makeCorpus(corpus)
        let args = ["extract", "--input", corpus, "--files-per-shard", "4", "--audio-frames", "30", "--video-frames", "2", "--video-dim", "3"]
        let whole = try h.run(args + ["--out", h.dir + "/whole"])
        XCTAssertEqual(whole.status, 0, whole.err)
        // Every chunk is extracted; the kill comes after the first shard is stamped, before it moves.
        let killed = try h.run(args + ["--out", h.dir + "/resumed"], environment: ["SKESL_FAULT_EXTRACT_KILL_PLACING": "1"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertTrue(killed.err.contains("SKESL_FAULT_EXTRACT_KILL_PLACING=1: killing this rank"), killed.err)
        let resumed = try h.run(args + ["--out", h.dir + "/resumed"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("12/12 files (100.0%, 12 done before)"), resumed.err)
        XCTAssertEqual(try contents(h.dir + "/resumed"), try contents(h.dir + "/whole"))
        let verify = try h.run(["store", "verify", h.dir + "/resumed"])
        XCTAssertEqual(verify.status, 0, verify.out + verify.err)
    }
}
