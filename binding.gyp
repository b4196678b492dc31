# qsae is built by CMake (CMakeLists.txt) through cmake-js; this file only delegates to it, for tools
# that run node-gyp. npm never runs it: package.json has its own "install" script.
{
  "targets": [
    {
      "target_name": "qsae_cmake",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake-js",
          "inputs": ["CMakeLists.txt"],
          "outputs": ["build/Release/qsae.node"],
          "action": ["node", "scripts/build-native.mjs"]
        }
      ]
    }
  ]
}
