import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends the run with the plain line CI reads: `N passed, N failed, N skipped`.
 * Unhandled errors and modules that failed to load count as failures, so they cannot hide.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const mod of testModules) {
      let tests = 0;
      for (const test of mod.children.allTests()) {
        tests++;
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      // A module that threw while loading (or in a hook) has no failed test to count.
      if (mod.state() === 'failed' && tests === 0) failed++;
      else if (mod.errors().length > 0) failed += mod.errors().length;
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
