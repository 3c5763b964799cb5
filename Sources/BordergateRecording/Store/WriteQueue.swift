import Foundation
import GRDB

/// The store's writes from recordings, batched: whatever was handed in while the writer was busy
/// is written in one transaction (one commit, one sync of the WAL), each write in a savepoint of
/// its own so one failing does not undo the others. Order is kept, within a session and across
/// them; completions run after the commit, so a `session` event never announces rows that a crash
/// could still take back.
final class WriteQueue: @unchecked Sendable {
    typealias Work = @Sendable (Database) throws -> Void
    typealias Done = @Sendable (Result<Void, any Error>) -> Void

    private let pool: DatabasePool
    private let lock = NSLock()
    private var queued: [(work: Work, done: Done)] = []
    private var scheduled = false

    init(pool: DatabasePool) {
        self.pool = pool
    }

    /// Never waits: the work runs on GRDB's writer queue.
    func enqueue(_ work: @escaping Work, done: @escaping Done) {
        let schedule = lock.withLock { () -> Bool in
            queued.append((work, done))
            defer { scheduled = true }
            return !scheduled
        }
        if schedule {
            pool.asyncWriteWithoutTransaction { [self] db in drain(db) }
        }
    }

    private func drain(_ db: Database) {
        while true {
            let batch = lock.withLock { () -> [(work: Work, done: Done)] in
                let b = queued
                queued = []
                if b.isEmpty { scheduled = false }
                return b
            }
            if batch.isEmpty { return }
            var results: [Result<Void, any Error>] = []
            results.reserveCapacity(batch.count)
            do {
                try db.inTransaction {
                    for op in batch {
                        do {
                            try db.inSavepoint {
                                try op.work(db)
                                return .commit
                            }
                            results.append(.success(()))
                        } catch {
                            results.append(.failure(error))
                        }
                    }
                    return .commit
                }
            } catch {
                results = batch.map { _ in .failure(error) } // the commit failed: nothing is stored
            }
            for (op, result) in zip(batch, results) { op.done(result) }
        }
    }
}
