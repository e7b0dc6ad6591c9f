// Element types that collectives can move and reduce, with their MPI datatype.
import COpenMPI
import CShim

public protocol MPIScalar {
    static var mpiDatatype: MPI_Datatype { get }
}

extension Float: MPIScalar { public static var mpiDatatype: MPI_Datatype { skesl_mpi_float() } }
extension Double: MPIScalar { public static var mpiDatatype: MPI_Datatype { skesl_mpi_double() } }
extension Int64: MPIScalar { public static var mpiDatatype: MPI_Datatype { skesl_mpi_int64() } }
extension UInt64: MPIScalar { public static var mpiDatatype: MPI_Datatype { skesl_mpi_uint64() } }
extension Int32: MPIScalar { public static var mpiDatatype: MPI_Datatype { skesl_mpi_int() } }
extension UInt8: MPIScalar { public static var mpiDatatype: MPI_Datatype { skesl_mpi_byte() } }
// Int is 64 bits on every platform this project builds for.
extension Int: MPIScalar { public static var mpiDatatype: MPI_Datatype { skesl_mpi_int64() } }

/// Reduction operators of all-reduce.
public enum ReduceOp: Sendable, CustomStringConvertible {
    case sum, max, min
    var mpiOp: MPI_Op {
        switch self {
        case .sum: return skesl_mpi_sum()
        case .max: return skesl_mpi_max()
        case .min: return skesl_mpi_min()
        }
    }
    public var description: String {
        switch self { case .sum: return "sum"; case .max: return "max"; case .min: return "min" }
    }
}
