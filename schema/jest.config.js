module.exports = {
  displayName: 'schema',
  testEnvironment: 'node',
  rootDir: '.',
  // The cross-language contract tests live at the top level, next to their fixtures.
  roots: ['<rootDir>/src', '<rootDir>/../tests/contract'],
  transform: { '^.+\\.tsx?$': ['ts-jest', { tsconfig: { resolveJsonModule: true, esModuleInterop: true } }] },
  testMatch: ['**/*.test.ts'],
};
