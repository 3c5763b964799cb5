public struct RegionAnswer: Sendable, Equatable {
    public var address: IPAddress
    public var region: String
    public var country: String?
    public var jurisdictions: [String]
    /// The table that decided.
    public var table: String
    /// The prefix that decided.
    public var prefix: IPPrefix
}

/// The flattened form of a database, for the kernel's LPM tries: its longest-prefix match gives
/// the same region as `RegionDatabase.lookup` for every address.
public struct KernelRegionImage: Sendable {
    /// Class 0 is reserved for "no entry"; class i > 0 is a region name.
    public var classes: [String]
    /// Address in host order, host bits cleared.
    public var ipv4: [(address: UInt32, length: UInt8, regionClass: UInt32)]
    /// 16 bytes, host bits cleared. IPv4 is not repeated here.
    public var ipv6: [(address: [UInt8], length: UInt8, regionClass: UInt32)]
    /// Stable hash of classes and entries: the same tables give the same value.
    public var fingerprint: UInt64
}

/// Longest-prefix match over several tables at once (on equal prefixes the earlier table wins).
///
/// All prefixes are resolved once into sorted, disjoint intervals, each owned by the prefix that
/// wins there; a lookup is one binary search. IPv4 and IPv6 are separate spaces, as in the kernel.
public final class RegionDatabase: Sendable {
    public let tables: [RegionTable.Summary]
    public let catalog: RegionCatalog
    /// Region names by class; class 0 is "" (no entry).
    let classes: [String]
    let classCountry: [String?]
    let classJurisdictions: [[String]]
    let v4: FamilyIndex<UInt32>
    let v6: FamilyIndex<UInt128>

    public init(tables: [RegionTable], catalog: RegionCatalog = .builtIn) {
        self.tables = tables.map(\.summary)
        self.catalog = catalog
        // Classes in name order, so the image does not depend on the order tables were read in.
        var names = Set<String>()
        for t in tables { for e in t.entries { names.insert(e.region) } }
        let classes = [""] + names.sorted()
        var classOf: [String: UInt32] = [:]
        for (i, n) in classes.enumerated() { classOf[n] = UInt32(i) }
        self.classes = classes
        classCountry = classes.map { $0.isEmpty ? nil : catalog.country(ofRegion: $0) }
        classJurisdictions = classCountry.map { $0.map { catalog.jurisdictions(ofCountry: $0) } ?? [] }

        var items4: [FamilyIndex<UInt32>.Item] = []
        var items6: [FamilyIndex<UInt128>.Item] = []
        var order: UInt32 = 0
        for (ti, t) in tables.enumerated() {
            for e in t.entries {
                let cls = classOf[e.region]!
                let a = e.prefix.address
                if let ip = a.ipv4 {
                    items4.append(.init(start: ip, bits: UInt8(e.prefix.length), table: UInt32(ti), order: order, cls: cls))
                } else {
                    items6.append(.init(start: a.value, bits: UInt8(e.prefix.length), table: UInt32(ti), order: order, cls: cls))
                }
                order &+= 1
            }
        }
        v4 = FamilyIndex(items: &items4)
        v6 = FamilyIndex(items: &items6)
    }

    public func lookup(_ ip: IPAddress) -> RegionAnswer? {
        let hit: (start: UInt128, bits: Int, table: UInt32, cls: UInt32)
        if let v = ip.ipv4 {
            guard let i = v4.owner(of: v) else { return nil }
            hit = (IPAddress.v4MappedBase | UInt128(v4.prefixStart[i]), Int(v4.prefixBits[i]) + 96, v4.prefixTable[i], v4.prefixClass[i])
        } else {
            guard let i = v6.owner(of: ip.value) else { return nil }
            hit = (v6.prefixStart[i], Int(v6.prefixBits[i]), v6.prefixTable[i], v6.prefixClass[i])
        }
        let cls = Int(hit.cls)
        return RegionAnswer(address: ip, region: classes[cls], country: classCountry[cls],
                            jurisdictions: classJurisdictions[cls], table: tables[Int(hit.table)].name,
                            prefix: IPPrefix(unchecked: hit.start, bits128: hit.bits))
    }

    /// Region names by class, as `kernelImage()` numbers them (index 0 is "": no table knows it).
    public var regionClasses: [String] { classes }

    /// A coarser image for the kernel: `classMap[c]` is the kernel class of region class c, and
    /// kernel class 0 ("as if no table knew it") is left out. Policies tell apart far fewer
    /// destinations than the tables do (EU or not), so merging runs of equal kernel class and
    /// writing each run as the fewest prefixes shrinks the tries by orders of magnitude.
    public func kernelImage(classMap: [UInt32], classNames: [String]) -> KernelRegionImage {
        precondition(classMap.count == classes.count && classMap.first == 0)
        // Two ways to write it; real tables (disjoint country ranges) favour runs, nested and
        // overlapping tables favour the reduced prefixes. Take the smaller.
        func smaller<K>(_ f: FamilyIndex<K>) -> [FamilyIndex<K>.Reduced] {
            let runs = f.partitionedPrefixes(classMap)
            let nested = f.reducedPrefixes(map: classMap)
            return nested.count < runs.count ? nested : runs
        }
        return Self.image(classes: classNames, k4: smaller(v4), k6: smaller(v6))
    }

    public func kernelImage() -> KernelRegionImage {
        Self.image(classes: classes, k4: v4.reducedPrefixes(), k6: v6.reducedPrefixes())
    }

    /// The image and its fingerprint (FNV-1a over classes and entries; never 0, which the kernel's
    /// bookkeeping reads as "empty").
    private static func image(classes: [String], k4: [FamilyIndex<UInt32>.Reduced],
                              k6: [FamilyIndex<UInt128>.Reduced]) -> KernelRegionImage {
        var fnv = FNV1a()
        func mix(_ b: UInt8) { fnv.mix(b) }
        func mix32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { mix(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
        for c in classes { for b in c.utf8 { mix(b) }; mix(0) }
        mix32(UInt32(k4.count))
        for e in k4 { mix32(e.start); mix(e.bits); mix32(e.cls) }
        mix32(UInt32(k6.count))
        var ipv6: [(address: [UInt8], length: UInt8, regionClass: UInt32)] = []
        ipv6.reserveCapacity(k6.count)
        for e in k6 {
            let bytes = IPAddress(value: e.start).bytes16
            for b in bytes { mix(b) }
            mix(e.bits); mix32(e.cls)
            ipv6.append((bytes, e.bits, e.cls))
        }
        return KernelRegionImage(classes: classes, ipv4: k4.map { ($0.start, $0.bits, $0.cls) }, ipv6: ipv6,
                                 fingerprint: fnv.value == 0 ? 1 : fnv.value)
    }
}

/// One address family: the distinct prefixes (each with the table and class that won it) and the
/// disjoint intervals they resolve to.
struct FamilyIndex<K: FixedWidthInteger & UnsignedInteger & Sendable>: Sendable {
    struct Item {
        var start: K
        var bits: UInt8
        var table: UInt32
        var order: UInt32
        var cls: UInt32
    }

    static var width: Int { K.bitWidth }
    static func hostMask(_ bits: UInt8) -> K { bits == 0 ? ~K(0) : (bits >= UInt8(width) ? 0 : ~K(0) >> Int(bits)) }

    /// Distinct prefixes sorted by (start, length): a prefix comes before those inside it.
    let prefixStart: [K]
    let prefixBits: [UInt8]
    let prefixTable: [UInt32]
    let prefixClass: [UInt32]
    /// Interval i covers starts[i] ..< starts[i + 1]; owners[i] is a prefix index or `none`.
    let starts: [K]
    let owners: [UInt32]
    /// buckets[b] is the first interval starting at or after b << (width - 16): a lookup only
    /// searches the intervals of its top 16 bits, which keeps the search within a few cache lines.
    let buckets: [UInt32]
    static var none: UInt32 { .max }

    init(items: inout [Item]) {
        items.sort { a, b in
            if a.start != b.start { return a.start < b.start }
            if a.bits != b.bits { return a.bits < b.bits }
            if a.table != b.table { return a.table < b.table }
            return a.order < b.order
        }
        var ps: [K] = [], pb: [UInt8] = [], pt: [UInt32] = [], pc: [UInt32] = []
        ps.reserveCapacity(items.count); pb.reserveCapacity(items.count)
        pt.reserveCapacity(items.count); pc.reserveCapacity(items.count)
        for it in items where ps.last != it.start || pb.last != it.bits {
            ps.append(it.start); pb.append(it.bits); pt.append(it.table); pc.append(it.cls)
        }
        prefixStart = ps; prefixBits = pb; prefixTable = pt; prefixClass = pc

        var starts: [K] = [0], owners: [UInt32] = [FamilyIndex.none]
        starts.reserveCapacity(ps.count * 2); owners.reserveCapacity(ps.count * 2)
        func emit(_ from: K, _ owner: UInt32) {
            if starts.last == from {
                owners[owners.count - 1] = owner
                if owners.count >= 2 && owners[owners.count - 2] == owner { starts.removeLast(); owners.removeLast() }
            } else if owners.last != owner {
                starts.append(from); owners.append(owner)
            }
        }
        var stack: [(last: K, owner: UInt32)] = []
        for i in 0..<ps.count {
            let start = ps[i]
            while let top = stack.last, top.last < start {
                stack.removeLast()
                emit(top.last + 1, stack.last?.owner ?? FamilyIndex.none)
            }
            emit(start, UInt32(i))
            stack.append((start | FamilyIndex.hostMask(pb[i]), UInt32(i)))
        }
        while let top = stack.popLast() {
            if top.last == K.max { break }
            emit(top.last + 1, stack.last?.owner ?? FamilyIndex.none)
        }
        self.starts = starts
        self.owners = owners
        var buckets = [UInt32](repeating: UInt32(starts.count), count: 65_537)
        var b = 0
        for (i, s) in starts.enumerated() {
            let top = Int(s >> (FamilyIndex.width - 16))
            while b <= top { buckets[b] = UInt32(i); b += 1 }
        }
        self.buckets = buckets
    }

    /// The index of the prefix that answers `key`, if any.
    @inline(__always) func owner(of key: K) -> Int? {
        // Largest i with starts[i] <= key; starts[0] == 0, and every interval before buckets[top]
        // starts below key.
        let top = Int(key >> (FamilyIndex.width - 16))
        var lo = max(Int(buckets[top]) - 1, 0), hi = Int(buckets[top + 1])
        starts.withUnsafeBufferPointer { s in
            while hi - lo > 1 {
                let mid = (lo + hi) >> 1
                if s[mid] <= key { lo = mid } else { hi = mid }
            }
        }
        let o = owners[lo]
        return o == FamilyIndex.none ? nil : Int(o)
    }

    struct Reduced: Hashable {
        var start: K
        var bits: UInt8
        var cls: UInt32
    }

    /// Runs of intervals with one kernel class (per `map`), each as the fewest aligned prefixes;
    /// runs of kernel class 0 are left out. The prefixes are disjoint, so the order of insertion
    /// into an LPM trie does not matter.
    func partitionedPrefixes(_ map: [UInt32]) -> [Reduced] {
        let width = FamilyIndex.width
        func kclass(_ i: Int) -> UInt32 {
            let o = owners[i]
            return o == FamilyIndex.none ? 0 : map[Int(prefixClass[Int(o)])]
        }
        var out: [Reduced] = []
        var i = 0
        let n = starts.count
        while i < n {
            let k = kclass(i)
            var j = i + 1
            while j < n && kclass(j) == k { j += 1 }
            if k != 0 {
                forEachAlignedBlock(from: starts[i], through: j < n ? starts[j] - 1 : K.max) { start, size in
                    out.append(Reduced(start: start, bits: UInt8(width - size), cls: k))
                }
            }
            i = j
        }
        return out
    }

    /// The winning prefixes, reduced without changing any answer: an entry with the region of its
    /// nearest covering entry goes; two sibling halves with one region become their parent.
    /// With `map`, classes are first mapped (kernel classes) and entries of class 0 with no
    /// non-zero cover go too: class 0 is what an address without an entry gets.
    func reducedPrefixes(map: [UInt32]? = nil) -> [Reduced] {
        var list: [Reduced] = []
        list.reserveCapacity(prefixStart.count)
        for i in 0..<prefixStart.count {
            let cls = map?[Int(prefixClass[i])] ?? prefixClass[i]
            list.append(Reduced(start: prefixStart[i], bits: prefixBits[i], cls: cls))
        }
        let dropUncoveredZero = map != nil
        let width = FamilyIndex.width
        for _ in 0..<64 {
            let before = list.count
            // 1. Drop entries equal to their nearest kept cover (list is in nesting order).
            var kept: [Reduced] = []
            kept.reserveCapacity(list.count)
            var stack: [(last: K, cls: UInt32)] = []
            for e in list {
                while let top = stack.last, top.last < e.start { stack.removeLast() }
                if let top = stack.last, top.cls == e.cls { continue }
                if dropUncoveredZero && stack.isEmpty && e.cls == 0 { continue }
                kept.append(e)
                stack.append((e.start | FamilyIndex.hostMask(e.bits), e.cls))
            }
            // 2. Merge sibling halves of one region into their parent, longest first so merges cascade.
            var byLength = [[K: UInt32]](repeating: [:], count: width + 1)
            for e in kept { byLength[Int(e.bits)][e.start] = e.cls }
            var merged = false
            for length in stride(from: width, through: 1, by: -1) where !byLength[length].isEmpty {
                let bit = K(1) << (width - length)
                for (start, cls) in byLength[length] where start & bit == 0 {
                    guard byLength[length][start | bit] == cls else { continue }
                    byLength[length][start] = nil
                    byLength[length][start | bit] = nil
                    // Both halves cover all of the parent, so a parent entry's own region never answered.
                    byLength[length - 1][start] = cls
                    merged = true
                }
            }
            if merged {
                list = []
                for (bits, level) in byLength.enumerated() {
                    for (start, cls) in level { list.append(Reduced(start: start, bits: UInt8(bits), cls: cls)) }
                }
                list.sort { $0.start != $1.start ? $0.start < $1.start : $0.bits < $1.bits }
            } else {
                list = kept
            }
            if !merged && list.count == before { break }
        }
        return list
    }
}
