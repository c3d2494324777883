// The spec's comparison rule and a readable line diff for failures.
import Foundation

enum Transcript {
    /// Lines as the spec compares them: leading and trailing white space
    /// stripped, blank lines dropped.
    static func normalized(_ text: String) -> [String] {
        // isNewline: a CR LF pair is one Character in Swift.
        text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    static func fixture(_ name: String) throws -> String {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
            throw ConformanceSetupError(description: "fixture \(name) missing from the test bundle")
        }
        return try String(contentsOf: url, encoding: .utf8)
    }

    /// A unified-style diff (`-` expected, `+` actual, 3 lines of context,
    /// positions as line numbers in the normalized texts), empty when the
    /// lines are equal. At most `limit` lines, so one missing node does not
    /// bury the rest of the report.
    static func diff(expected: [String], actual: [String], limit: Int = 160) -> String {
        let edits = LineEdit.script(from: expected, to: actual)
        guard edits.contains(where: { $0.kind != .same }) else { return "" }
        var out: [String] = []
        let context = 3
        var index = 0
        while index < edits.count {
            guard edits[index].kind != .same else { index += 1; continue }
            var start = max(0, index - context)
            // Extend the hunk while changes are close together.
            var end = index
            while end < edits.count {
                if edits[end].kind != .same { end += 1; continue }
                var next = end
                while next < edits.count && edits[next].kind == .same { next += 1 }
                if next < edits.count && next - end <= 2 * context { end = next } else { break }
            }
            let stop = min(edits.count, end + context)
            if let first = edits[start..<stop].first {
                out.append("@@ expected line \(first.expectedLine + 1), actual line \(first.actualLine + 1) @@")
            }
            while start < stop {
                let edit = edits[start]
                switch edit.kind {
                case .same: out.append("  " + expected[edit.expectedLine])
                case .removed: out.append("- " + expected[edit.expectedLine])
                case .added: out.append("+ " + actual[edit.actualLine])
                }
                start += 1
            }
            index = stop
        }
        let changed = edits.filter { $0.kind != .same }.count
        var text = out.prefix(limit).joined(separator: "\n")
        if out.count > limit { text += "\n... (\(out.count - limit) more diff lines)" }
        return "\(changed) lines differ (- expected, + actual):\n" + text
    }
}

/// One step of a shortest edit script between two line lists.
struct LineEdit {
    enum Kind { case same, removed, added }
    var kind: Kind
    /// Position in the expected list (of the line, or where an added line goes).
    var expectedLine: Int
    var actualLine: Int

    /// Longest common subsequence by dynamic programming: the transcripts
    /// are about a thousand lines, so the table is about a million cells.
    static func script(from a: [String], to b: [String]) -> [LineEdit] {
        let n = a.count, m = b.count
        var lcs = [[Int32]](repeating: [Int32](repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        var edits: [LineEdit] = []
        var i = 0, j = 0
        while i < n || j < m {
            if i < n && j < m && a[i] == b[j] {
                edits.append(LineEdit(kind: .same, expectedLine: i, actualLine: j))
                i += 1; j += 1
            } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
                // Removals before additions, as diff(1) shows a changed line.
                edits.append(LineEdit(kind: .removed, expectedLine: i, actualLine: j))
                i += 1
            } else {
                edits.append(LineEdit(kind: .added, expectedLine: i, actualLine: j))
                j += 1
            }
        }
        return edits
    }
}
