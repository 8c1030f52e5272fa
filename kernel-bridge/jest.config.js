const path = require('path');

/** @type {import('jest').Config} */
module.exports = {
  rootDir: __dirname,
  roots: ['<rootDir>/src'],
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(__dirname, 'tsconfig.test.json') }],
  },
  // Starting a real ipykernel on a small CI machine takes several seconds.
  testTimeout: 60000,
  setupFilesAfterEnv: ['<rootDir>/jest.setup.js'],
  // Kernel tests are process-heavy; running them one file at a time keeps a 2-core machine responsive.
  maxWorkers: 1,
};
