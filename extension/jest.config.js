// JupyterLab's own preset (jsdom with its shims, ts-jest, CSS mocked), with our test layout: tests
// sit beside the code they test as *.test.ts.
const jupyterlab = require('@jupyterlab/testing/lib/jest-config');

const base = jupyterlab(__dirname);

// ESM-only packages that must go through babel; everything else in node_modules is left alone.
const esModules = ['@jupyterlab', '@jupyter', '@lumino', '@codemirror', '@marijn', '@microsoft', 'exenv-es6', 'color', 'lib0', 'marked', 'nanoid', 'vscode-ws-jsonrpc', 'yjs', 'y-protocols', 'y-websocket'].join('|');

module.exports = {
  ...base,
  displayName: 'extension',
  rootDir: '.',
  roots: ['<rootDir>/src'],
  testRegex: '\\.test\\.ts$',
  reporters: ['default'],
  transform: {
    ...base.transform,
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: require('path').join(__dirname, 'tsconfig.test.json') }],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esModules})/)`],
};
