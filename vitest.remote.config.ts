import { defineConfig } from 'vitest/config';

// The remote tier's tests against real Redis servers (npm run test:remote).
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/remote/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
