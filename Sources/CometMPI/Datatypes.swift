import CMPI
import CometShim

/// A Swift scalar type with a matching predefined MPI datatype.
public protocol MPIScalar: Sendable {
    static var mpiDatatype: MPI_Datatype { get }
}

extension Float: MPIScalar { public static var mpiDatatype: MPI_Datatype { comet_type_float() } }
extension Double: MPIScalar { public static var mpiDatatype: MPI_Datatype { comet_type_double() } }
extension Int32: MPIScalar { public static var mpiDatatype: MPI_Datatype { comet_type_int32() } }
extension Int64: MPIScalar { public static var mpiDatatype: MPI_Datatype { comet_type_int64() } }
extension UInt64: MPIScalar { public static var mpiDatatype: MPI_Datatype { comet_type_uint64() } }
extension UInt8: MPIScalar { public static var mpiDatatype: MPI_Datatype { comet_type_byte() } }

/// A predefined reduction.
public enum ReduceOp: Sendable {
    case sum, max, min

    var handle: MPI_Op {
        switch self {
        case .sum: comet_op_sum()
        case .max: comet_op_max()
        case .min: comet_op_min()
        }
    }
}
