// One jest run over every TypeScript workspace, so `npm test` reports a single count for them.
const fs = require('fs');
const path = require('path');

module.exports = {
  projects: ['schema', 'kernel-bridge', 'extension']
    .filter((dir) => fs.existsSync(path.join(__dirname, dir, 'jest.config.js')))
    .map((dir) => `<rootDir>/${dir}`),
};
