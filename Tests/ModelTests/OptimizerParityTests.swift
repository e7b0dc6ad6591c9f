// Adam, AdamW, SGD, gradient clipping and cosine annealing against torch.optim
// (Tests/Fixtures/model/optim.h5, layout in its README).
import XCTest
import Foundation
import SKESLHDF5
import SKESLModel

final class OptimizerParityTests: XCTestCase {
    let names = ["p0", "p1", "p2"]

    /// A layout whose trainable span is p0, p1, p2 in "crossmodal"/"head" groups: we use a
    /// text-only config only for its ParameterLayout type; the optimiser sees segments.
    func runCase(_ f: H5File, _ name: String) throws {
        let g = "/results/" + name
        let opt = try f.stringAttribute("optimizer", on: g)
        var oc = OptimizerConfig()
        oc.kind = opt == "Adam" ? .adam : opt == "AdamW" ? .adamw : .sgd
        oc.lr = Float(try f.attribute("lr", on: g, as: Double.self))
        oc.weightDecay = Float(try f.attribute("weight_decay", on: g, as: Double.self))
        if oc.kind == .sgd {
            oc.momentum = Float(try f.attribute("momentum", on: g, as: Double.self))
            oc.dampening = Float(try f.attribute("dampening", on: g, as: Double.self))
            oc.nesterov = try f.attribute("nesterov", on: g, as: Int64.self) != 0
        } else {
            oc.beta1 = Float(try f.attribute("beta1", on: g, as: Double.self))
            oc.beta2 = Float(try f.attribute("beta2", on: g, as: Double.self))
            oc.eps = Float(try f.attribute("eps", on: g, as: Double.self))
        }
        var groupOf: [String: Float] = [:]
        if f.hasAttribute("group_lrs_json", on: g) {
            let js = try f.stringAttribute("group_lrs_json", on: g)
            groupOf = (try JSONSerialization.jsonObject(with: Data(js.utf8)) as! [String: Double]).mapValues { Float($0) }
        }
        // Flat buffers p0 | p1 | p2, each tensor its own group (named after it).
        let initial = try names.map { try f.read("/params/" + $0, as: Double.self).values.map { Float($0) } }
        let sizes = initial.map(\.count)
        let n = sizes.reduce(0, +)
        let params = UnsafeMutablePointer<Float>.allocate(capacity: n), grads = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { params.deallocate(); grads.deallocate() }
        params.update(from: initial.flatMap { $0 }, count: n)
        // Tensor k is parameter group k (the fixture has at most three tensors).
        precondition(names.count <= ParameterGroup.allCases.count)
        let groups = Dictionary(uniqueKeysWithValues: zip(ParameterGroup.allCases, names))
        let o = Optimizer(config: oc, segments: zip(ParameterGroup.allCases, sizes).map { (group: $0, count: $1) })
        let steps = Int(try f.attribute("steps", as: Int64.self))
        for s in 1...steps {
            let gs = try names.flatMap { try f.read("/grads/step\(s)/" + $0, as: Double.self).values.map { Float($0) } }
            grads.update(from: gs, count: n)
            o.update(params: params, grads: grads) { groupOf[groups[$0]!] ?? oc.lr }
            var off = 0
            for (k, nm) in names.enumerated() {
                let ref = try f.read("\(g)/step\(s)/\(nm)", as: Double.self).values
                for i in 0..<sizes[k] {
                    XCTAssertEqual(Double(params[off + i]), ref[i], accuracy: 1e-6 * max(1, abs(ref[i])), "\(name) step \(s) \(nm)[\(i)]")
                }
                off += sizes[k]
            }
        }
    }

    func testOptimisers() throws {
        let f = try H5File.open(fixturePath("model", "optim.h5"))
        let cases = try f.children(of: "/results")
        XCTAssertEqual(Set(cases), ["adam", "adam_wd", "adamw", "adam_groups", "sgd", "sgd_momentum", "sgd_nesterov"])
        for c in cases { try runCase(f, c) }
    }

    func testGradientClipping() throws {
        let f = try H5File.open(fixturePath("model", "optim.h5"))
        for c in ["clipped", "unclipped"] {
            let g = "/clip/" + c
            let input = try names.flatMap { try f.read("\(g)/in/\($0)", as: Double.self).values.map { Float($0) } }
            let ref = try names.flatMap { try f.read("\(g)/out/\($0)", as: Double.self).values }
            var buf = input
            let norm = buf.withUnsafeMutableBufferPointer {
                Optimizer.clip($0.baseAddress!, count: $0.count, maxNorm: Float(try! f.attribute("max_norm", on: g, as: Double.self)))
            }
            XCTAssertEqual(norm, try f.attribute("total_norm", on: g, as: Double.self), accuracy: 1e-5)
            for i in 0..<ref.count { XCTAssertEqual(Double(buf[i]), ref[i], accuracy: 1e-6 * max(1, abs(ref[i])), "\(c)[\(i)]") }
        }
    }

    func testCosineAnnealingLikePyTorch() throws {
        let f = try H5File.open(fixturePath("model", "optim.h5"))
        for name in ["cosine_eta0", "cosine_eta1e-6"] {
            let d = "/schedule/" + name
            let ref = try f.read(d, as: Double.self).values
            var s = ScheduleConfig()
            s.kind = .cosine
            s.tMax = Int(try f.attribute("T_max", on: d, as: Int64.self))
            s.etaMin = Float(try f.attribute("eta_min", on: d, as: Double.self))
            let base = Float(try f.attribute("base_lr", on: d, as: Double.self))
            XCTAssertEqual(ref.count, 101)
            for (k, r) in ref.enumerated() {
                XCTAssertEqual(Double(s.lr(base: base, epoch: k, step: 1000)), r, accuracy: 1e-6 * r + 1e-12, "\(name) epoch \(k)")
            }
        }
    }

    func testWarmupAndValidation() throws {
        var s = ScheduleConfig(); s.warmupSteps = 4
        XCTAssertEqual(s.lr(base: 1, epoch: 0, step: 0), 0.25)
        XCTAssertEqual(s.lr(base: 1, epoch: 0, step: 3), 1)
        XCTAssertEqual(s.lr(base: 1, epoch: 0, step: 10), 1)
        var oc = OptimizerConfig(); oc.groupLR = ["encoder": 1e-4]
        XCTAssertThrowsError(try oc.validate()) { XCTAssertTrue("\($0)".contains("unknown parameter group")) }
    }
}
