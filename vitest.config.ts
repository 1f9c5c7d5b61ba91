import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native code runs in forked processes, so a native fault cannot take the runner down.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    // Real Redis servers: npm run test:remote (vitest.remote.config.ts).
    exclude: ['test/remote/**', '**/node_modules/**'],
    testTimeout: 60_000,
  },
});
