import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import NIOCore

/// The server's messages: results masked on their way to the tool, statements finished into the
/// recording.
extension PostgreSQLRelay {
    func fromServer(_ frame: PGFrame) throws {
        guard let type = frame.type else { throw PGProtocolError("the server sent an untyped message") }
        switch type {
        case UInt8(ascii: "R"):
            if frame.body.getInteger(at: frame.body.readerIndex, as: Int32.self) == 0, frame.body.readableBytes == 4 {
                authenticated = true
                recordConnect(outcome: "authenticated")
            }
            write(frame)
        case UInt8(ascii: "Z"):
            guard frame.body.readableBytes == 1, let status = frame.body.getInteger(at: frame.body.readerIndex, as: UInt8.self),
                  [UInt8(ascii: "I"), UInt8(ascii: "T"), UInt8(ascii: "E")].contains(status) else {
                throw PGProtocolError("the server sent a ReadyForQuery without a transaction status")
            }
            transactionStatus = status
            readyForQuery()
            write(frame)
        case UInt8(ascii: "K"):
            cancelKeys.register(Array(frame.body.readableBytesView), session: connection.connection.connectionID)
            write(frame)
        case UInt8(ascii: "T"):
            columns = try Self.rowDescription(frame.body)
            write(frame)
        case UInt8(ascii: "2"):
            if !segments.isEmpty, !segments[0].binds.isEmpty { resultFormats = segments[0].binds.removeFirst() }
            write(frame)
        case UInt8(ascii: "D"):
            if !segments.isEmpty, !segments[0].statements.isEmpty { segments[0].statements[0].rows += 1 }
            guard let engine = rules.engine else { return write(frame) }
            guard let masked = try maskRow(frame.body, engine: engine) else { return }
            clientSide.write(PGFrame(type: type, body: masked).encoded(allocator: allocator))
        case UInt8(ascii: "C"):
            var r = PGReader(frame.body, "a CommandComplete")
            finishStatement(outcome: try r.cString())
            resultFormats = nil
            write(frame)
        case UInt8(ascii: "I"):
            finishStatement(outcome: "EMPTY QUERY")
            write(frame)
        case UInt8(ascii: "s"):
            finishStatement(outcome: "SUSPENDED")
            write(frame)
        case UInt8(ascii: "E"), UInt8(ascii: "N"):
            let fields = PGMessages.fields(of: frame.body)
            let out = rules.engine.map { maskNotice(frame.body, engine: $0) } ?? frame.body
            if type == UInt8(ascii: "E") {
                let text = PGMessages.fields(of: out)
                let outcome = "ERROR \(fields[UInt8(ascii: "C")] ?? "?????"): \(text[UInt8(ascii: "M")] ?? "")"
                if !authenticated, startup != nil { recordConnect(outcome: outcome) } else { finishStatement(outcome: outcome) }
            }
            clientSide.write(PGFrame(type: type, body: out).encoded(allocator: allocator))
        case UInt8(ascii: "H"):
            try copyOutResponse(frame)
        case UInt8(ascii: "d"):
            guard copyOut?.masker != nil else { return write(frame) }
            let bytes = copyOut!.masker!.feed(frame.body.readableBytesView)
            writeCopyData(bytes)
        case UInt8(ascii: "c"):
            if copyOut?.masker != nil {
                writeCopyData(copyOut!.masker!.finish())
                if !segments.isEmpty, !segments[0].statements.isEmpty { segments[0].statements[0].masked.add(copyOut!.masker!.counts) }
            }
            copyOut = nil
            write(frame)
        case UInt8(ascii: "W"):
            // COPY BOTH (replication): rows in a stream Bordergate does not decode
            if rules.engine != nil {
                guard !rules.blockOnError else { return endWithError("a replication stream cannot be masked (on-error: block)") }
                noteStatement("replication stream relayed unmasked (on-error: pass)")
            }
            write(frame)
        case UInt8(ascii: "V"):
            if rules.engine != nil {
                guard !rules.blockOnError else { return endWithError("the result of a fast-path function call cannot be masked (on-error: block)") }
            }
            write(frame)
        case UInt8(ascii: "A"):
            // NotificationResponse: the payload is free text
            guard let engine = rules.engine else { return write(frame) }
            var r = PGReader(frame.body, "a NotificationResponse")
            let pid = try r.int32()
            let channel = try r.cString()
            let payload = try r.cString()
            var body = allocator.buffer(capacity: frame.body.readableBytes)
            body.writeInteger(Int32(pid))
            body.writeNullTerminated(channel)
            body.writeNullTerminated(String(decoding: engine.mask(Array(payload.utf8)).bytes, as: UTF8.self))
            clientSide.write(PGFrame(type: type, body: body).encoded(allocator: allocator))
        default:
            // ParameterStatus, BackendKeyData, ParseComplete, CloseComplete, NoData, ParameterDescription, ...
            write(frame)
        }
    }

    private func write(_ frame: PGFrame) {
        clientSide.write(frame.encoded(allocator: allocator))
    }

    private func writeCopyData(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        clientSide.write(PGFrame(type: UInt8(ascii: "d"), body: allocator.buffer(bytes: bytes)).encoded(allocator: allocator))
    }

    static func rowDescription(_ body: ByteBuffer) throws -> [Column] {
        var r = PGReader(body, "a RowDescription")
        let n = try r.count(minimumSize: 19)
        var out: [Column] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            let name = try r.cString()
            _ = try r.bytes(6) // table OID, column number
            let oid = try r.uint32()
            _ = try r.bytes(6) // type size, modifier
            out.append(Column(name: name, typeOID: oid, format: try r.int16()))
        }
        guard r.remaining == 0 else { throw PGProtocolError("a RowDescription has \(r.remaining) bytes after its last column") }
        return out
    }

    /// Binary values of these types are numbers, times, booleans or ids: no detector matches them.
    static let inertBinaryTypes: Set<UInt32> = [16, 21, 23, 26, 700, 701, 1082, 1083, 1114, 1184, 1186, 2950]
    /// Binary values of these types are their UTF-8 text (jsonb after a version byte): masked as text.
    static let textBinaryTypes: Set<UInt32> = [25, 1043, 1042, 19, 114]

    /// Masks a DataRow's values and re-frames it; nil when the connection was ended instead.
    func maskRow(_ body: ByteBuffer, engine: MaskingEngine) throws -> ByteBuffer? {
        var r = PGReader(body, "a DataRow")
        let n = try r.count(minimumSize: 4)
        if !columns.isEmpty, columns.count != n {
            throw PGProtocolError("a DataRow holds \(n) values for the \(columns.count) columns its RowDescription announced")
        }
        var out = allocator.buffer(capacity: body.readableBytes + 16)
        out.writeInteger(Int16(n))
        var counts = MaskCounts()
        for i in 0..<n {
            let length = try r.int32()
            if length == -1 {
                out.writeInteger(Int32(-1))
                continue
            }
            guard length >= 0 else { throw PGProtocolError("a DataRow gives value \(i + 1) the length \(length)") }
            let value = try r.bytes(length)
            let column: Column? = i < columns.count ? columns[i] : nil
            let format = effectiveFormat(i)
            let typeOID = column?.typeOID ?? 0
            let named = column.map { engine.isMaskedField($0.name) } ?? false
            if column == nil, !engine.configuration.fields.isEmpty {
                // no RowDescription came for this result: the field rules cannot be applied
                guard !rules.blockOnError else {
                    endWithError("a result came without its column names, so the field rules cannot be applied (on-error: block)")
                    return nil
                }
                noteStatement("columns unknown: field rules not applied (on-error: pass)")
            }
            if format != 0, !Self.textBinaryTypes.contains(typeOID) {
                if !named, Self.inertBinaryTypes.contains(typeOID) {
                    out.writeInteger(Int32(length))
                    out.writeImmutableBuffer(value)
                    continue
                }
                guard !rules.blockOnError else {
                    endWithError("column \(column?.name ?? String(i + 1)) is in binary format (type \(typeOID)), which cannot be masked (on-error: block)")
                    return nil
                }
                noteStatement("binary column \(column?.name ?? String(i + 1)) relayed unmasked (on-error: pass)")
                out.writeInteger(Int32(length))
                out.writeImmutableBuffer(value)
                continue
            }
            let bytes = Array(value.readableBytesView)
            let masked = named ? engine.maskWhole(bytes, countedAs: column!.name) : engine.mask(bytes)
            counts.add(masked.counts)
            out.writeInteger(Int32(masked.bytes.count))
            out.writeBytes(masked.bytes)
        }
        guard r.remaining == 0 else { throw PGProtocolError("a DataRow has \(r.remaining) bytes after its last value") }
        if !segments.isEmpty, !segments[0].statements.isEmpty { segments[0].statements[0].masked.add(counts) }
        return out
    }

    /// The format of column `i`: binary if the RowDescription or the Bind that made the portal says so.
    func effectiveFormat(_ i: Int) -> Int {
        let described = i < columns.count ? columns[i].format : 0
        guard let f = resultFormats, !f.isEmpty else { return described }
        let bound = f.count == 1 ? f[0] : (i < f.count ? f[i] : 0)
        return max(described, bound)
    }

    /// An ErrorResponse or NoticeResponse with its human-readable fields masked (a detail can
    /// quote the failing row: "Failing row contains (1, alice@example.com)").
    func maskNotice(_ body: ByteBuffer, engine: MaskingEngine) -> ByteBuffer {
        var r = PGReader(body, "an ErrorResponse")
        var out = allocator.buffer(capacity: body.readableBytes + 16)
        let free: Set<UInt8> = [UInt8(ascii: "M"), UInt8(ascii: "D"), UInt8(ascii: "H"), UInt8(ascii: "W"), UInt8(ascii: "q")]
        while let code = try? r.byte(), code != 0, let value = try? r.cString() {
            out.writeInteger(code)
            out.writeNullTerminated(free.contains(code) ? String(decoding: engine.mask(Array(value.utf8)).bytes, as: UTF8.self) : value)
        }
        out.writeInteger(UInt8(0))
        return out
    }

    func copyOutResponse(_ frame: PGFrame) throws {
        var r = PGReader(frame.body, "a CopyOutResponse")
        let overall = try r.byte()
        let n = try r.count(minimumSize: 2)
        _ = try (0..<n).map { _ in try r.int16() }
        copyOut = CopyOut(masker: nil)
        if let engine = rules.engine {
            if overall != 0 {
                guard !rules.blockOnError else { return endWithError("a binary COPY cannot be masked (on-error: block)") }
                noteStatement("binary COPY relayed unmasked (on-error: pass)")
            } else {
                // COPY names no columns on the wire: field rules cannot be matched to its values
                if !engine.configuration.fields.isEmpty {
                    guard !rules.blockOnError else {
                        return endWithError("COPY OUT carries no column names, so the field rules cannot be applied (on-error: block)")
                    }
                    noteStatement("COPY: field rules not applied (on-error: pass); detectors ran")
                }
                copyOut = CopyOut(masker: engine.makeStream())
            }
        }
        write(frame)
    }
}

extension ByteBuffer {
    mutating func writeNullTerminated(_ s: String) {
        writeString(s)
        writeInteger(UInt8(0))
    }
}
