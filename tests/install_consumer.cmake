# Installs the flashattn build tree into a scratch prefix, then configures, builds and runs the consumer
# project against it, as a C++ user would. Run by ctest (see tests/CMakeLists.txt) with
#   -DBUILD_DIR=<flashattn build tree> -DCONSUMER_SOURCE_DIR=<tests/consumer> -DWORK_DIR=<scratch dir>
#   -DGENERATOR=<cmake generator> -DCXX_COMPILER=<compiler> -DCONFIG=<build configuration>
cmake_minimum_required(VERSION 3.24)

foreach(required BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "install_consumer.cmake: -D${required}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --config ${CONFIG}
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${consumer_build} -G ${GENERATOR}
                        -DCMAKE_BUILD_TYPE=${CONFIG} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
                        -DCMAKE_PREFIX_PATH=${prefix}
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${consumer_build} --config ${CONFIG} COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${consumer_build}/flashattn_consumer COMMAND_ERROR_IS_FATAL ANY)
